"""The driver's view of its rollout workers: submit a batch, collect it, message them all.

`submit(tag, ...)` and `collect(tag)` are separate so that the driver can queue batch
k+1 before learning on batch k (bounded staleness): replies come back in the order the
requests went out, and a weight push (`send_all`, from m2rl.weightsync) queued behind a
generation lands after it.

* `RemoteFleet`: rollout tasks over the control channel (`transport`).
* `LocalFleet`: a colocated engine in the driver's own process (a one-task job).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from m2rl.rollout.engine import SamplingSpec, spec_dict
from m2rl.rollout.transport import DriverChannel
from m2rl.rollout.worker import RolloutWorker
from m2rl.runtime.dist import node_name


@dataclass
class Generation:
    groups: list[list[dict]]  # per request, its completions (ids, logprobs, reward, finish, ...)
    workers: list[dict] = field(default_factory=list)  # per worker: generate_s, reward_s, tokens
    wall_s: float = 0.0  # submit -> last reply, as the driver saw it

    @property
    def tokens(self) -> int:
        return sum(w["tokens"] for w in self.workers)


class RemoteFleet:
    def __init__(self, channel: DriverChannel):
        self.ch = channel
        self.n = channel.n
        self.hosts = channel.hosts
        self._assigned: dict = {}
        self._t0: dict = {}

    def submit(self, tag, requests: list[dict], spec: SamplingSpec, seeds: list[int], keep_text: bool = False) -> None:
        self._t0[tag] = time.perf_counter()
        parts = [list(range(w, len(requests), self.n)) for w in range(self.n)]
        self._assigned[tag] = (len(requests), parts)
        for w, idx in enumerate(parts):
            self.ch.send(w, {"op": "generate", "requests": [requests[i] for i in idx], "spec": spec_dict(spec),
                             "seeds": [seeds[i] for i in idx], "keep_text": keep_text}, ("gen", tag))

    def collect(self, tag, should_stop: Callable[[], bool] | None = None) -> Generation:
        """The batch submitted under `tag`; with `should_stop`, gives up (StopWaiting) as
        soon as it says so, leaving the workers' replies unread."""
        n, parts = self._assigned[tag]
        groups: list = [None] * n
        workers = []
        for w, idx in enumerate(parts):
            rep = self.ch.reply(w, ("gen", tag), should_stop)
            for i, g in zip(idx, rep["groups"]):
                groups[i] = g
            workers.append({"generate_s": rep["generate_s"], "reward_s": rep["reward_s"], "tokens": rep["tokens"]})
        del self._assigned[tag]
        return Generation(groups, workers, time.perf_counter() - self._t0.pop(tag))

    def send_all(self, message: Callable[[int], dict], tag) -> None:
        """Queue `message(w)` on every worker w; `replies(tag)` collects the answers."""
        for w in range(self.n):
            self.ch.send(w, message(w), tag)

    def replies(self, tag) -> list[dict]:
        return [self.ch.reply(w, tag) for w in range(self.n)]

    def close(self, final: dict | None = None) -> None:
        self.ch.close(final)


class LocalFleet:
    """The same protocol served in-process: requests run when submitted."""

    n = 1

    def __init__(self, worker: RolloutWorker):
        self.worker = worker
        self.hosts = [node_name()]
        self._done: dict = {}

    def submit(self, tag, requests: list[dict], spec: SamplingSpec, seeds: list[int], keep_text: bool = False) -> None:
        t0 = time.perf_counter()
        rep = self.worker.handle({"op": "generate", "requests": requests, "spec": spec_dict(spec), "seeds": seeds,
                                  "keep_text": keep_text})
        self._done[tag] = Generation(rep["groups"], [{"generate_s": rep["generate_s"], "reward_s": rep["reward_s"],
                                                      "tokens": rep["tokens"]}], time.perf_counter() - t0)

    def collect(self, tag, should_stop: Callable[[], bool] | None = None) -> Generation:
        return self._done.pop(tag)  # generated when submitted: nothing to give up

    def send_all(self, message: Callable[[int], dict], tag) -> None:
        self._done[tag] = [self.worker.handle(message(0))]

    def replies(self, tag) -> list[dict]:
        return self._done.pop(tag)

    def close(self, final: dict | None = None) -> None:
        self.worker.close()
