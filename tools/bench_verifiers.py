"""Verifier throughput per domain (responses per second) on this machine.

    python tools/bench_verifiers.py [--n 500] [--workers N]

Responses are the generated tasks' reference answers, half of them corrupted, so both
passing and failing paths run; the worker pool is started and warmed before timing.
"""
from __future__ import annotations

import argparse
import os
import time

from m2rl.data import DataConfig, load_sft_dataset, to_sample
from m2rl.rewards import Scorer
from m2rl.rewards.sandbox import isolation


def corrupt(sample: dict, response: str, i: int) -> str:
    if i % 2 == 0:
        return response
    return {"math": response.replace("boxed{", "boxed{1"), "science": "The answer is (A).",
            "if": "x", "code": response.replace("print(", "print(1 + ")}[sample["domain"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="responses per domain (code: a quarter)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    print(f"workers={args.workers} cpus={os.cpu_count()} sandbox={isolation()}")
    with Scorer(workers=args.workers) as scorer:
        scorer.score([], [])
        for domain in ("math", "science", "if", "code"):
            n = max(8, args.n // 4) if domain == "code" else args.n
            samples = [to_sample(r) for r in load_sft_dataset(domain, DataConfig(n_train=n, seed=0), "train")]
            responses = [corrupt(s, s["response"], i) for i, s in enumerate(samples)]
            scorer.score(samples[:4], responses[:4])  # warm the workers
            t0 = time.monotonic()
            results = scorer.score(samples, responses)
            dt = time.monotonic() - t0
            mean = sum(r.reward for r in results) / len(results)
            extra = f", {len(samples[0]['reward_spec']['tests'])} tests each" if domain == "code" else ""
            print(f"{domain:8s} {len(samples) / dt:8.1f} responses/s  ({len(samples)} in {dt:.2f} s,"
                  f" mean reward {mean:.2f}{extra})")


if __name__ == "__main__":
    main()
