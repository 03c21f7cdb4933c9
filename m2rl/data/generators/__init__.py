"""Bundled offline task generators, one module per domain, deterministic for a seed.

A task's split is fixed by a hash of its key (about 10% go to eval), whatever the seed, so
the train and eval splits are disjoint by construction; the seed only orders the draw.
"""
from __future__ import annotations

import hashlib
import random

from m2rl.data.generators import code, ifeval, math, science

MAKERS = {"math": math.make, "code": code.make, "science": science.make, "if": ifeval.make}
EVAL_PERCENT = 10


def split_of(domain: str, key: str) -> str:
    h = int(hashlib.sha256(f"{domain}\0{key}".encode()).hexdigest()[:8], 16)
    return "eval" if h % 100 < EVAL_PERCENT else "train"


def generate(domain: str, split: str, n: int, seed: int = 0, need_response: bool = False) -> list[dict]:
    """`n` distinct tasks of `domain` in `split` ("train" or "eval")."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    make = MAKERS[domain]
    rng = random.Random(f"{seed}:{domain}:{split}")
    tasks: dict[str, dict] = {}
    for _ in range(max(1000, n * 200)):
        if len(tasks) >= n:
            break
        task = make(rng)
        if task["key"] in tasks or split_of(domain, task["key"]) != split:
            continue
        if need_response and not task["response"]:
            continue
        tasks[task["key"]] = task
    if len(tasks) < n:
        raise ValueError(f"the {domain} generator gave only {len(tasks)} distinct {split} tasks of {n}")
    return list(tasks.values())
