"""One reward API for every domain: `score(samples, responses) -> list[RewardResult]`.

Each sample is routed to its domain's verifier by its `domain` tag (math, code, science,
if). The format rule (`format.split_think`) runs first: an unclosed `<think>` scores 0 and
the verifiers see only the text after `</think>`. Verification runs in a reusable pool of
worker processes (math-verify needs a main thread for its timeouts; code runs sandboxed
subprocesses); a chunk that overruns its time budget, or whose worker died, scores 0 and
the pool is replaced.
"""
from __future__ import annotations

import atexit
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from m2rl.rewards.format import split_think

DOMAINS = ("math", "code", "science", "if")


@dataclass
class RewardResult:
    """`info["verifier_error"]` is set when the verifier itself crashed or overran its time
    budget: that 0 says nothing about the response (a domain verifier's own "error", e.g.
    a failing test's stderr, is about the response)."""

    reward: float
    domain: str
    info: dict = field(default_factory=dict)


@dataclass
class RewardConfig:
    require_think: bool = False  # True: the study's strict rule (no `</think>` scores 0)
    math_timeout_s: int = 10
    max_code_tests: int = 20


def _verify_one(domain: str, answer: str, spec: dict, key: str, cfg: RewardConfig):
    if domain == "math":
        from m2rl.rewards import math
        return math.verify(answer, spec, cfg.math_timeout_s)
    if domain == "code":
        from m2rl.rewards import code
        return code.verify(answer, spec, cfg.max_code_tests, key)
    if domain == "science":
        from m2rl.rewards import science
        return science.verify(answer, spec)
    if domain == "if":
        from m2rl.rewards import ifeval
        return ifeval.verify(answer, spec)
    raise ValueError(f"no verifier for domain {domain!r} (known: {DOMAINS})")


def _verify_chunk(items: list[tuple], cfg: RewardConfig) -> list[tuple[float, dict]]:
    out = []
    for domain, answer, spec, key in items:
        try:
            out.append(_verify_one(domain, answer, spec, key, cfg))
        except Exception as e:  # a verifier crash is a 0, never a lost batch
            out.append((0.0, {"verifier_error": f"{type(e).__name__}: {e}"[:300]}))
    return out


def _worker_init() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from m2rl.rewards import ifeval, math  # noqa: F401  (warm imports)
    ifeval.registry()
    import math_verify  # noqa: F401


def _spec(sample: dict) -> dict:
    spec = sample["reward_spec"]
    return json.loads(spec) if isinstance(spec, str) else dict(spec)


def _budget_s(domain: str, spec: dict, cfg: RewardConfig) -> float:
    if domain == "code":
        n = 1 if spec.get("harness") == "check" else min(len(spec.get("tests") or []), cfg.max_code_tests)
        return n * (float(spec.get("time_limit_s") or 10.0) + 2.0) + 10.0
    if domain == "math":
        return 3.0 * cfg.math_timeout_s
    return 30.0


class Scorer:
    """A reusable scorer; `workers=0` verifies inline (in this process's main thread)."""

    def __init__(self, workers: int | None = None, config: RewardConfig | None = None):
        self.workers = len(os.sched_getaffinity(0)) if workers is None else workers
        self.config = config or RewardConfig()
        self._pool = None

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp.get_context("spawn"),
                                                initializer=_worker_init)
            for f in self._submit([(int, ())] * self.workers):  # start every worker now
                f.result()
        return self._pool

    def _submit(self, calls: list[tuple]) -> list[cf.Future]:
        """The executor starts a worker inside `submit` when none is idle; a notice must
        reach only the job's process, so the workers are started with it blocked (they
        inherit the mask), also when the pool is re-created after a timeout."""
        from m2rl.runtime.preemption import children_deaf_to_preemption

        with children_deaf_to_preemption():
            return [self._pool.submit(fn, *args) for fn, args in calls]

    def close(self) -> None:
        """Kill the workers and reap them. SIGKILL: they are deaf to SIGTERM (`_submit`), so
        a terminate-and-join would wait forever on a busy one."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        workers = list((pool._processes or {}).values())  # Python 3.14: pool.kill_workers()
        manager = pool._executor_manager_thread
        pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.kill()
        for w in workers:
            w.join()
        if manager is not None:
            manager.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def score(self, samples: Sequence[dict], responses: Sequence[str]) -> list[RewardResult]:
        if len(samples) != len(responses):
            raise ValueError(f"{len(samples)} samples but {len(responses)} responses")
        results: list[RewardResult | None] = [None] * len(samples)
        todo: list[tuple[int, tuple, float]] = []
        for i, (sample, response) in enumerate(zip(samples, responses)):
            domain = sample["domain"]
            ok, answer = split_think(response, self.config.require_think)
            if not ok:
                results[i] = RewardResult(0.0, domain, {"format_ok": False})
                continue
            spec = _spec(sample)
            key = str(sample.get("id", i))
            todo.append((i, (domain, answer, spec, key), _budget_s(domain, spec, self.config)))
        for (i, _, _), (reward, info) in zip(todo, self._run([t[1:] for t in todo])):
            results[i] = RewardResult(float(reward), samples[i]["domain"], {"format_ok": True, **info})
        return results  # type: ignore[return-value]

    def _run(self, jobs: list[tuple[tuple, float]]) -> list[tuple[float, dict]]:
        if not jobs:
            return []
        if self.workers == 0:
            return _verify_chunk([item for item, _ in jobs], self.config)
        # Code items go one per task (each is seconds); the rest in chunks, a few per worker.
        chunks: list[list[int]] = []
        quick = [i for i, (item, _) in enumerate(jobs) if item[0] != "code"]
        size = max(1, -(-len(quick) // (self.workers * 4)))
        chunks += [quick[k:k + size] for k in range(0, len(quick), size)]
        chunks += [[i] for i, (item, _) in enumerate(jobs) if item[0] == "code"]
        self._get_pool()
        futures = self._submit([(_verify_chunk, ([jobs[i][0] for i in c], self.config)) for c in chunks])
        pending = list(zip(chunks, futures))
        # Every chunk's worst case, spread over the workers, plus the longest one: past
        # that deadline a worker is stuck (a verifier ignoring its own timeout).
        budgets = [sum(jobs[i][1] for i in c) for c in chunks]
        deadline = time.monotonic() + sum(budgets) / self.workers + max(budgets)
        out: list[Any] = [None] * len(jobs)
        broken = False
        for idx, handle in pending:
            try:
                values = handle.result(timeout=max(0.1, deadline - time.monotonic()))
            except cf.TimeoutError:
                broken = True
                values = [(0.0, {"verifier_error": "verifier timeout"})] * len(idx)
            except cf.process.BrokenProcessPool as e:  # a worker died (killed, out of memory)
                broken = True
                values = [(0.0, {"verifier_error": f"verifier died: {e}"[:300]})] * len(idx)
            for i, v in zip(idx, values):
                out[i] = v
        if broken:
            self.close()  # a stuck or dead worker: start a fresh pool next time
        return out


_default: Scorer | None = None


def get_scorer(workers: int | None = None) -> Scorer:
    """The process-wide scorer (created lazily, rebuilt if `workers` changes)."""
    global _default
    if _default is None or (workers is not None and workers != _default.workers):
        if _default is not None:
            _default.close()
        _default = Scorer(workers)
    return _default


def score(samples: Sequence[dict], responses: Sequence[str], *, workers: int | None = None) -> list[RewardResult]:
    return get_scorer(workers).score(samples, responses)


def close() -> None:
    global _default
    if _default is not None:
        _default.close()
        _default = None


atexit.register(close)

__all__ = ["DOMAINS", "RewardConfig", "RewardResult", "Scorer", "close", "get_scorer", "score"]
