"""Eval metrics: the unbiased pass@k against brute force over all k-subsets, Avg@K and
its standard error, lengths and truncation, and clear errors on a ragged table."""
import itertools
import math
import random

import pytest

from m2rl.eval.metrics import default_ks, mean_and_stderr, pass_at_k, summarize


def brute_pass_at_k(flags: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(range(len(flags)), k))
    return sum(any(flags[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_matches_brute_force_over_all_subsets(n):
    for c in range(n + 1):
        flags = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(flags, k), abs=1e-12)


def test_summarize_pass_at_k_is_the_mean_of_brute_force_per_prompt():
    rng = random.Random(0)
    table = [[float(rng.random() < p) for _ in range(6)] for p in (0.0, 0.2, 0.5, 0.9, 1.0, 0.3, 0.7)]
    out = summarize(table, ks=range(1, 7))
    for k in range(1, 7):
        want = sum(brute_pass_at_k([r == 1.0 for r in row], k) for row in table) / len(table)
        assert out["pass_at_k"][str(k)] == pytest.approx(want, abs=1e-12)
    assert out["pass_at_k"]["1"] == pytest.approx(out["avg_at_k"])  # 0/1 rewards


def test_avg_at_k_stderr_counts_and_lengths():
    table = [[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]
    lengths = [[10, 20, 30, 40], [5, 5, 5, 5], [100, 0, 0, 0]]
    trunc = [[False, False, True, False], [False] * 4, [True, False, False, False]]
    out = summarize(table, lengths, trunc)
    per_prompt = [0.75, 0.0, 1.0]
    mean = sum(per_prompt) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_prompt) / 2)
    assert out["avg_at_k"] == pytest.approx(mean)
    assert out["avg_at_k_stderr"] == pytest.approx(sd / math.sqrt(3))
    assert (out["k"], out["n_prompts"], out["n_samples"]) == (4, 3, 12)
    assert list(out["pass_at_k"]) == ["1", "2", "4"]
    assert out["pass_at_k"]["4"] == pytest.approx(2 / 3)
    assert out["mean_length"] == pytest.approx(220 / 12)
    assert out["truncation_rate"] == pytest.approx(2 / 12)


def test_partial_rewards_count_in_avg_but_not_as_correct():
    out = summarize([[0.5, 1.0], [0.25, 0.0]])
    assert out["avg_at_k"] == pytest.approx((0.75 + 0.125) / 2)
    assert out["pass_at_k"]["1"] == pytest.approx(0.25)
    assert summarize([[0.5, 1.0]], correct_at=0.5)["pass_at_k"]["1"] == 1.0


def test_default_ks_and_one_prompt():
    assert default_ks(1) == [1] and default_ks(16) == [1, 2, 4, 8, 16] and default_ks(6) == [1, 2, 4, 6]
    assert mean_and_stderr([0.3]) == (0.3, 0.0)


@pytest.mark.parametrize("kwargs,field", [
    ({"rewards": []}, "rewards"),
    ({"rewards": [[1, 0], [1]]}, "same number"),
    ({"rewards": [[1, 0]], "ks": [3]}, "ks"),
    ({"rewards": [[1, 0]], "lengths": [[1]]}, "lengths"),
    ({"rewards": [[1, 0]], "truncated": [[True, False], [True, True]]}, "truncated"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        summarize(**kwargs)


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError, match="n=3, c=4"):
        pass_at_k(3, 4, 1)
