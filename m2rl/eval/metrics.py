"""Benchmark metrics from per-sample rewards: pure functions, no I/O.

Input is one benchmark's scores as a prompts x K table (every prompt has the same number
of samples K). A sample counts as *correct* for pass@k when its reward reaches
`correct_at` (1.0: every test passed, every instruction followed, the right answer).

* Avg@K: the mean reward over all prompts x K samples (the study's headline number).
* pass@k for k <= K: the unbiased estimator of Chen et al. (2021, "Evaluating Large
  Language Models Trained on Code"): per prompt with n samples of which c are correct,
  1 - C(n-c, k) / C(n, k), averaged over prompts. pass@1 equals Avg@K for 0/1 rewards.
* Standard errors: of the mean over prompts of the per-prompt value (sample standard
  deviation with ddof=1 over sqrt(n_prompts)); the K samples of a prompt are not
  independent draws of the benchmark, its prompts are. 0 with one prompt.
* mean response length (tokens, or whatever unit the caller passes) and truncation rate
  (the fraction of samples that hit the max-tokens limit).

Everything is a fraction in [0, 1]; results.json reports percent (x100).
"""
from __future__ import annotations

import math
from typing import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one prompt: n samples, c correct (Chen et al., eq. 1, in its
    numerically stable product form)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def default_ks(k_max: int) -> list[int]:
    """1, 2, 4, ... up to K, and K itself."""
    ks, k = [], 1
    while k <= k_max:
        ks.append(k)
        k *= 2
    if k_max >= 1 and ks[-1] != k_max:
        ks.append(k_max)
    return ks


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        raise ValueError("mean_and_stderr of no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def _table(rewards: Sequence[Sequence[float]]) -> list[list[float]]:
    rows = [[float(r) for r in row] for row in rewards]
    if not rows:
        raise ValueError("rewards: no prompts (pass one row of K rewards per prompt)")
    k = len(rows[0])
    bad = [i for i, row in enumerate(rows) if len(row) != k]
    if k == 0 or bad:
        raise ValueError(f"rewards: every prompt needs the same number K >= 1 of samples "
                         f"(prompt 0 has {k}; prompts {bad[:5]} differ); pass a prompts x K table")
    return rows


def _flat(name: str, values, shape: tuple[int, int]) -> list[float]:
    rows = [list(row) for row in values]
    if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
        raise ValueError(f"{name}: expected a {shape[0]} x {shape[1]} table like rewards")
    return [float(v) for row in rows for v in row]


def summarize(rewards: Sequence[Sequence[float]], lengths: Sequence[Sequence[float]] | None = None,
              truncated: Sequence[Sequence[bool]] | None = None, ks: Sequence[int] | None = None,
              correct_at: float = 1.0) -> dict:
    """Every metric of one benchmark from its prompts x K rewards (and, optionally, the
    same-shaped response lengths and truncation flags)."""
    rows = _table(rewards)
    n_prompts, k_max = len(rows), len(rows[0])
    ks = list(ks) if ks is not None else default_ks(k_max)
    if any(not 1 <= k <= k_max for k in ks):
        raise ValueError(f"ks: each k must be in 1..K={k_max} (got {ks})")
    avg, avg_se = mean_and_stderr([math.fsum(row) / k_max for row in rows])
    correct = [sum(r >= correct_at for r in row) for row in rows]
    out = {"avg_at_k": avg, "avg_at_k_stderr": avg_se, "k": k_max, "n_prompts": n_prompts,
           "n_samples": n_prompts * k_max, "pass_at_k": {}, "pass_at_k_stderr": {}}
    for k in ks:
        mean, se = mean_and_stderr([pass_at_k(k_max, c, k) for c in correct])
        out["pass_at_k"][str(k)], out["pass_at_k_stderr"][str(k)] = mean, se
    if lengths is not None:
        flat = _flat("lengths", lengths, (n_prompts, k_max))
        out["mean_length"] = math.fsum(flat) / len(flat)
    if truncated is not None:
        flat = _flat("truncated", truncated, (n_prompts, k_max))
        out["truncation_rate"] = sum(bool(t) for t in flat) / len(flat)
    return out


__all__ = ["default_ks", "mean_and_stderr", "pass_at_k", "summarize"]
