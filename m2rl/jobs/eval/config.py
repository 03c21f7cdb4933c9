"""The `eval` config section and its checks (before anything is submitted)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from m2rl.errors import ConfigError

STUDY = ("aime24", "aime25", "lcb_v5", "lcb_v6", "hle", "gpqa_diamond", "ifeval", "ifbench", "mmlu_redux")
# names that stand for several benchmarks in eval.benchmarks
GROUPS = {"study": STUDY, "heldout": ("heldout_math", "heldout_code", "heldout_science", "heldout_if")}
SAMPLING_KEYS = ("n", "temperature", "top_p", "max_tokens")


@dataclass
class EvalConfig:
    """Evaluate models on benchmarks with vLLM (see m2rl/jobs/eval/__init__.py)."""

    # all (every export of the experiment, the base model and the SFT model) | base |
    # <stage>/<run> of this experiment (grpo/math, merge/ties, sft/multi, opd/multi) | an HF dir | a hub id
    # | a list of these (one job, one engine for one architecture)
    model: Any = "all"
    # benchmark names (m2rl.eval.BENCHMARKS) or groups: study (the study's nine), heldout
    benchmarks: list[str] = field(default_factory=lambda: ["study"])
    sources: Any = None  # {benchmark: a local file in its published format, or a hub id}
    limit: Optional[int] = None  # the first `limit` items of each benchmark (null = all)
    # sampling over every benchmark's default (null = the benchmark's, the study's);
    # per benchmark: eval.sampling={aime24: {n: 32}}
    samples: Optional[int] = None  # K
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    sampling: Any = None  # {benchmark: {n, temperature, top_p, max_tokens}}
    require_think: bool = False  # the study's strict </think> rule (no </think>: reward 0)
    max_prompt_tokens: int = 4096  # longer prompts are cut from the left
    shard_prompts: int = 32  # prompts per result shard: what a preempted eval keeps
    batch_prompts: int = 256  # prompts per engine batch, across benchmarks
    reward_workers: int = 4  # verifier processes
    # the engine: tensor parallel over the job's GPUs (null = all of them)
    tensor_parallel_size: Optional[int] = None
    gpu_memory_utilization: float = 0.85
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | fp32
    cpu_kv_cache_gb: int = 1
    enforce_eager: bool = False


def _fail(key: str, problem: str, fix: str):
    raise ConfigError(f"eval.{key}", problem, fix)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def benchmark_names(e) -> list[str]:
    """eval.benchmarks with the groups expanded, in order, each once."""
    from m2rl.eval import BENCHMARKS

    names: list[str] = []
    if isinstance(e.benchmarks, str) or not hasattr(e.benchmarks, "__iter__"):
        _fail("benchmarks", f"must be a list, got {e.benchmarks!r}", "e.g. eval.benchmarks=[aime24,ifbench]")
    for b in e.benchmarks:
        for name in GROUPS.get(str(b), (str(b),)):
            if name not in BENCHMARKS:
                _fail("benchmarks", f"unknown benchmark {name!r}",
                      f"use names of {', '.join(BENCHMARKS)} or the groups {', '.join(GROUPS)}")
            if name not in names:
                names.append(name)
    if not names:
        _fail("benchmarks", "no benchmarks to run", "e.g. eval.benchmarks=[study] or eval.benchmarks=[heldout]")
    return names


def sampling_for(e, name: str):
    """The Sampling of benchmark `name`: its default, then eval.* overrides, then eval.sampling.<name>."""
    from m2rl.eval import sampling

    over = {k: v for k, v in (("n", e.samples), ("temperature", e.temperature), ("top_p", e.top_p),
                              ("max_tokens", e.max_tokens)) if v is not None}
    own = dict((e.sampling or {}).get(name) or {})
    bad = set(own) - set(SAMPLING_KEYS)
    if bad:
        _fail(f"sampling.{name}", f"unknown key(s) {sorted(bad)}", f"use {', '.join(SAMPLING_KEYS)}")
    return sampling(name, **{**over, **own})


def validate(cfg) -> list[str]:
    e = cfg.eval
    names = benchmark_names(e)
    for key in ("sampling", "sources"):
        extra = set(e[key] or {}) - set(names)
        if extra:
            _fail(key, f"names benchmark(s) not in eval.benchmarks: {sorted(extra)}",
                  f"add them to eval.benchmarks or drop them from eval.{key}")
    for name in names:
        s = sampling_for(e, name)
        where = f"sampling.{name}" if name in (e.sampling or {}) else None
        if not _count(s.n):
            _fail(where or "samples", f"K must be a whole number >= 1, got {s.n!r}", "e.g. eval.samples=4")
        if not _count(s.max_tokens):
            _fail(where or "max_tokens", f"must be a whole number >= 1, got {s.max_tokens!r}",
                  "e.g. eval.max_tokens=32768")
        if not (isinstance(s.temperature, (int, float)) and math.isfinite(s.temperature) and s.temperature >= 0):
            _fail(where or "temperature", f"must be >= 0, got {s.temperature!r}", "e.g. eval.temperature=1.0")
        if s.temperature == 0 and s.n > 1:
            _fail(where or "samples", f"{name}: temperature 0 (greedy) gives one response per prompt, K is {s.n}",
                  f"set K to 1 for it (eval.sampling={{{name}: {{temperature: 0.0, n: 1}}}}) or a temperature > 0")
        if not (isinstance(s.top_p, (int, float)) and 0 < s.top_p <= 1):
            _fail(where or "top_p", f"must be in (0, 1], got {s.top_p!r}", "e.g. eval.top_p=0.7")
    for key in ("shard_prompts", "batch_prompts", "max_prompt_tokens", "cpu_kv_cache_gb"):
        if not _count(e[key]):
            _fail(key, f"must be a whole number >= 1, got {e[key]!r}", f"e.g. eval.{key}={EvalConfig.__dataclass_fields__[key].default}")
    if e.limit is not None and not _count(e.limit):
        _fail("limit", f"must be a whole number >= 1 or null, got {e.limit!r}", "e.g. eval.limit=50, or null for all")
    if not (isinstance(e.reward_workers, int) and e.reward_workers >= 0):
        _fail("reward_workers", f"must be a whole number >= 0, got {e.reward_workers!r}", "e.g. eval.reward_workers=4")
    if e.precision not in ("auto", "bf16", "fp16", "fp32"):
        _fail("precision", f"unknown precision {e.precision!r}", "use auto, bf16, fp16 or fp32")
    if not 0 < float(e.gpu_memory_utilization) <= 1:
        _fail("gpu_memory_utilization", f"must be in (0, 1], got {e.gpu_memory_utilization}", "e.g. 0.85")
    return names
