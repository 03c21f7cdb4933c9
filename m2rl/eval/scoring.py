"""Scoring eval responses with the project's verifiers (m2rl.rewards), and the `</think>` rule.

`score(item, response)` -> (reward, info); `score_many(items, responses, scorer=...)`
for batches through a reusable pool (`m2rl.rewards.Scorer`, built with `reward_config`).
The format rule runs first, as in training: only the text after the last `</think>` is
judged and an unclosed `<think>` scores 0; `require_think=True` is the study's strict
form (a response with no `</think>` scores 0). Unlike training, a code task runs every
one of its tests (no sample of 20).
"""
from __future__ import annotations

from typing import Sequence

from m2rl.eval.items import EvalItem
from m2rl.rewards import RewardConfig, Scorer

ALL_TESTS = 1_000_000


def reward_config(require_think: bool = False, math_timeout_s: int = 10) -> RewardConfig:
    return RewardConfig(require_think=require_think, math_timeout_s=math_timeout_s, max_code_tests=ALL_TESTS)


def score_many(items: Sequence[EvalItem], responses: Sequence[str], *, scorer: Scorer | None = None,
               require_think: bool = False) -> list[tuple[float, dict]]:
    """One (reward, info) per (item, response); `scorer` (its own config decides the
    `</think>` rule) or, without one, inline scoring in this process."""
    if len(items) != len(responses):
        raise ValueError(f"score_many: {len(items)} items but {len(responses)} responses")
    if scorer is None:
        with Scorer(workers=0, config=reward_config(require_think)) as inline:
            return score_many(items, responses, scorer=inline)
    return [(r.reward, r.info) for r in scorer.score([i.sample() for i in items], list(responses))]


def score(item: EvalItem, response: str, *, require_think: bool = False) -> tuple[float, dict]:
    return score_many([item], [response], require_think=require_think)[0]
