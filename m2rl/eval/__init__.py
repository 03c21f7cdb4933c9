"""Evaluation: the benchmark registry, scoring through m2rl.rewards, metrics.

    from m2rl.eval import load, score, summarize
    items = load("aime24")                               # -> list[EvalItem]
    reward, info = score(items[0], response)             # the project's verifiers
    metrics = summarize(rewards_per_prompt_x_k, lengths, truncated)

Modules: `benchmarks` (the registry and default sampling), one module per family with
its answer format and scoring rule (`math_sets`, `code_sets`, `choice_sets`,
`instruction_sets`, `hle`), `items` (EvalItem, Sampling), `sources` (package data,
local files, hub ids), `scoring`, `metrics` (pure functions). Imports no stage.
"""
from m2rl.eval.benchmarks import BENCHMARKS, Benchmark, get, load, sampling
from m2rl.eval.items import EvalItem, Sampling
from m2rl.eval.metrics import pass_at_k, summarize
from m2rl.eval.scoring import reward_config, score, score_many

__all__ = ["BENCHMARKS", "Benchmark", "EvalItem", "Sampling", "get", "load", "pass_at_k",
           "reward_config", "sampling", "score", "score_many", "summarize"]
