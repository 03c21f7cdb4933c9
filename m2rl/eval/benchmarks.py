"""The benchmark registry: name -> loader, verifier domain, default sampling, gold writer.

    from m2rl.eval import benchmarks
    items = benchmarks.load("aime24")                  # offline, from its package
    items = benchmarks.load("gpqa_diamond", "gpqa_diamond.csv")   # a local published file
    benchmarks.get("aime24").sampling                  # Sampling(n=16, temperature=1.0, ...)

`source` is None (the default: the package data for the offline five, the hub id for the
rest), a local file in the published format, or a hub id. Each loader's module states the
answer format and scoring rule beside it: math_sets (AIME'24, AIME'25, MATH-500),
code_sets (HumanEval, LiveCodeBench v5/v6), choice_sets (GPQA-Diamond, MMLU-Redux),
instruction_sets (IFEval, IFBench), hle, heldout (each domain's held-out split of the
bundled generators: heldout_math, heldout_code, heldout_science, heldout_if).

Default sampling is the study's: temperature 1.0, top_p 0.7, up to 32768 tokens, and K
(`n`) = 16 for AIME'24 (AIME'25 alike), 4 for GPQA-Diamond, 1 for IFBench; benchmarks the
study sets no K for get 1. The job may override any of them per benchmark.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from m2rl.eval import choice_sets, code_sets, heldout, hle, instruction_sets, math_sets
from m2rl.eval.items import EvalItem, Sampling


@dataclass(frozen=True)
class Benchmark:
    name: str
    domain: str                                   # the m2rl.rewards verifier
    loader: Callable[..., list[EvalItem]]         # loader(source=None) -> items
    sampling: Sampling
    default_source: str                           # where `source=None` reads
    gold: Callable[[EvalItem], str]               # a response that must score 1.0 (tests)
    offline: bool = False                         # ships in a registry package (bootstrap)

    @property
    def rule(self) -> str:
        """The answer format and scoring rule (the loader's docstring)."""
        return (self.loader.__doc__ or "").strip()


def _if_gold(item: EvalItem) -> str:
    raise NotImplementedError(f"{item.benchmark}: no generic gold response (the checkers are "
                              "free-text constraints); tests use the package's sample_output")


def _lcb_gold(item: EvalItem) -> str:
    raise NotImplementedError("LiveCodeBench publishes no reference solutions")


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("aime24", "math", math_sets.aime24, Sampling(n=16), math_sets.PACKAGE, math_sets.gold, True),
    Benchmark("aime25", "math", math_sets.aime25, Sampling(n=16), math_sets.PACKAGE, math_sets.gold, True),
    Benchmark("math500", "math", math_sets.math500, Sampling(), math_sets.PACKAGE, math_sets.gold, True),
    Benchmark("humaneval", "code", code_sets.humaneval, Sampling(), code_sets.PACKAGE,
              code_sets.humaneval_gold, True),
    Benchmark("ifbench", "if", instruction_sets.ifbench, Sampling(n=1), instruction_sets.PACKAGE, _if_gold, True),
    Benchmark("ifeval", "if", instruction_sets.ifeval, Sampling(), instruction_sets.IFEVAL_HUB, _if_gold),
    Benchmark("gpqa_diamond", "science", choice_sets.gpqa_diamond, Sampling(n=4), choice_sets.GPQA_HUB,
              choice_sets.gold),
    Benchmark("mmlu_redux", "science", choice_sets.mmlu_redux, Sampling(), choice_sets.MMLU_REDUX_HUB,
              choice_sets.gold),
    Benchmark("lcb_v5", "code", code_sets.lcb_v5, Sampling(), code_sets.LCB_HUB, _lcb_gold),
    Benchmark("lcb_v6", "code", code_sets.lcb_v6, Sampling(), code_sets.LCB_HUB, _lcb_gold),
    Benchmark("hle", "math", hle.hle, Sampling(), hle.HUB, hle.gold),  # its MC items: science
    # each domain's held-out split of the bundled generators (the embedded default's eval)
    Benchmark("heldout_math", "math", heldout.math, Sampling(n=4), heldout.DEFAULT_SOURCE, heldout.gold, True),
    Benchmark("heldout_code", "code", heldout.code, Sampling(n=4), heldout.DEFAULT_SOURCE, heldout.gold, True),
    Benchmark("heldout_science", "science", heldout.science, Sampling(n=4), heldout.DEFAULT_SOURCE,
              heldout.gold, True),
    Benchmark("heldout_if", "if", heldout.instructions, Sampling(n=4), heldout.DEFAULT_SOURCE, heldout.gold, True),
]}


def get(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise KeyError(f"benchmark {name!r} is not registered; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def load(name: str, source: str | None = None, limit: int | None = None, **kwargs) -> list[EvalItem]:
    """The items of benchmark `name` (the first `limit` if given); `kwargs` go to its
    loader (e.g. `subjects=` for mmlu_redux)."""
    items = get(name).loader(source, **kwargs)
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: duplicate item ids in {source or get(name).default_source}")
    return items[:limit] if limit is not None else items


def sampling(name: str, **overrides) -> Sampling:
    """A benchmark's default sampling with `overrides` (n, temperature, top_p, max_tokens)."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Sampling)}
    if unknown:
        raise ValueError(f"sampling: unknown field(s) {sorted(unknown)} (n, temperature, top_p, max_tokens)")
    return dataclasses.replace(get(name).sampling, **overrides)
