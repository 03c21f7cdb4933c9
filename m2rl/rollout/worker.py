"""A rollout worker: an engine plus the domain verifiers, answering the driver's messages.

`RolloutWorker.handle(msg)` is the whole protocol: "generate" samples and rewards groups;
the weight-update ops (m2rl.weightsync.OPS) go to the engine's weights. A rollout task
serves it over the control channel (`transport.serve`), and a colocated task calls it
in-process, so both run the same code.
"""
from __future__ import annotations

import time

from m2rl import weightsync
from m2rl.rollout.engine import RolloutEngine, SamplingSpec


class RolloutWorker:
    """An engine plus a reward scorer, answering the driver's messages."""

    def __init__(self, engine: RolloutEngine, gcfg):
        from m2rl.rewards import RewardConfig, Scorer

        self.engine = engine
        self.scorer = Scorer(workers=int(gcfg.reward_workers), config=RewardConfig(require_think=bool(gcfg.require_think)))

    def start_verifiers(self) -> None:
        """Start the verifier processes now (the scorer would start them lazily)."""
        if self.scorer.workers > 0:
            self.scorer._get_pool()

    def close(self) -> None:
        self.scorer.close()

    def handle(self, msg: dict) -> dict:
        op = msg["op"]
        t0 = time.perf_counter()
        if op == "generate":
            out = self._generate(msg)
        elif op in weightsync.OPS:
            out = self.engine.weights.handle(msg)
        else:
            raise ValueError(f"unknown rollout op {op!r}")
        out["seconds"] = time.perf_counter() - t0
        return out

    def _generate(self, msg: dict) -> dict:
        spec = SamplingSpec(**msg["spec"])
        requests = msg["requests"]
        t0 = time.perf_counter()
        groups = self.engine.generate([r["prompt_ids"] for r in requests], spec, msg["seeds"])
        t1 = time.perf_counter()
        samples = [r["sample"] for r, g in zip(requests, groups) for _ in g]
        texts = [c["text"] for g in groups for c in g]
        rewards = self.scorer.score(samples, texts)
        t2 = time.perf_counter()
        attach_rewards(groups, rewards, keep_text=bool(msg.get("keep_text")))
        tokens = int(sum(len(c["ids"]) for g in groups for c in g))
        return {"op": "generated", "groups": groups, "tokens": tokens,
                "generate_s": t1 - t0, "reward_s": t2 - t1}


def attach_rewards(groups: list[list[dict]], rewards: list, keep_text: bool = False) -> None:
    """Each completion gets its reward, whether its format passed, and the verifier's own
    failure (crash or timeout) when there was one."""
    k = 0
    for g in groups:
        for c in g:
            c["reward"] = float(rewards[k].reward)
            c["format_ok"] = bool(rewards[k].info.get("format_ok", True))
            if rewards[k].info.get("verifier_error"):
                c["verifier_error"] = str(rewards[k].info["verifier_error"])
            if not keep_text:
                c.pop("text")
            k += 1
