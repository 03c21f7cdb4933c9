"""The `merge` config section, its checks, and its inputs resolved to directories."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from m2rl.errors import ConfigError
from m2rl.runtime.rundir import experiment_dir, run_export

METHODS = ("average", "task_arithmetic", "ties", "dare_ta", "dare_ties", "sce")
SEMANTICS = ("paper", "mergekit")
OUT_DTYPES = ("auto", "float32", "bfloat16", "float16")
TASK_DOMAINS = ("math", "code", "science", "if")
AUTO = "auto"
RECORD_NAME = "merge_record.json"  # in the output dir: method, parameters, inputs, hashes


@dataclass
class MergeConfig:
    """Merge per-domain RL checkpoints onto their base (see m2rl/jobs/merge/__init__.py)."""

    method: str = "ties"  # average | task_arithmetic | ties | dare_ta | dare_ties | sce
    semantics: str = "paper"  # paper: the study's merge code | mergekit: mergekit's definitions
    # base: an HF dir, or auto = <root>/<experiment>/sft/<base_run>/export
    base: str = AUTO
    base_run: str = "multi"
    # models: auto = <root>/<experiment>/grpo/<domain>/export for each of `domains`;
    # or a list of HF dirs; or a {name: dir} map
    models: Any = AUTO
    domains: list[str] = field(default_factory=lambda: list(TASK_DOMAINS))
    # per-model weights: null (all 1), one number, a list (models' order) or a {name: w} map
    weights: Any = None
    lam: float = 1.0  # λ: scales the merged task vector (task arithmetic, TIES, DARE, SCE)
    density: float = 0.2  # TIES: fraction of each task vector kept by magnitude (1 = no trim)
    drop_p: float = 0.2  # DARE: probability of dropping each delta
    select_topk: float = 1.0  # SCE: fraction of elements kept by variance across models (1 = off)
    normalize: Optional[bool] = None  # semantics=mergekit only: divide by the weight sum (null = method default)
    seed: Optional[int] = None  # DARE's seed (null = experiment.seed)
    dtype: str = AUTO  # output dtype of floating tensors: auto (the base's) | float32 | bfloat16 | float16
    chunk_mb: int = 8  # elements processed at a time per model (float32 MB): bounds memory
    threads: Optional[int] = None  # cores to use (null = every core the job may run on)
    shard_mb: int = 2000  # output shard size


def _fail(field_: str, problem: str, fix: str):
    raise ConfigError(field_, problem, fix)


def _num_ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate(cfg) -> None:
    m = cfg.merge
    if m.method not in METHODS:
        _fail("merge.method", f"unknown merge method {m.method!r}", f"use one of {', '.join(METHODS)}")
    if m.semantics not in SEMANTICS:
        _fail("merge.semantics", f"unknown semantics {m.semantics!r}",
              "use merge.semantics=paper (the study's code) or merge.semantics=mergekit")
    if not (_num_ok(m.lam)):
        _fail("merge.lam", f"must be a finite number, got {m.lam!r}", "e.g. merge.lam=1.0")
    if not (_num_ok(m.density) and 0 < m.density <= 1):
        _fail("merge.density", f"must be in (0, 1], got {m.density}", "e.g. merge.density=0.2 (1 keeps everything)")
    if not (_num_ok(m.drop_p) and 0 <= m.drop_p < 1):
        _fail("merge.drop_p", f"must be in [0, 1), got {m.drop_p}", "e.g. merge.drop_p=0.2")
    if not (_num_ok(m.select_topk) and 0 < m.select_topk <= 1):
        _fail("merge.select_topk", f"must be in (0, 1], got {m.select_topk}", "e.g. merge.select_topk=1.0 (off)")
    if m.dtype not in OUT_DTYPES:
        _fail("merge.dtype", f"unknown dtype {m.dtype!r}", f"use one of {', '.join(OUT_DTYPES)}")
    if m.chunk_mb < 1:
        _fail("merge.chunk_mb", f"must be >= 1, got {m.chunk_mb}", "e.g. merge.chunk_mb=8")
    if m.shard_mb < 1:
        _fail("merge.shard_mb", f"must be >= 1, got {m.shard_mb}", "e.g. merge.shard_mb=2000")
    if m.threads is not None and not (isinstance(m.threads, int) and not isinstance(m.threads, bool)
                                      and m.threads >= 1):
        _fail("merge.threads", f"must be a whole number >= 1 or null, got {m.threads!r}",
              "e.g. merge.threads=2, or drop it to use every core the job may run on")
    if m.normalize is not None:
        if m.semantics != "mergekit":
            _fail("merge.normalize", "semantics=paper fixes each method's normalisation",
                  "drop merge.normalize, or use merge.semantics=mergekit")
        if m.method == "sce":
            _fail("merge.normalize", "sce has no normalize switch", "drop merge.normalize")
    if m.method == "sce" and m.weights is not None:
        _fail("merge.weights", "SCE computes its own per-tensor weights", "drop merge.weights for merge.method=sce")
    names, paths = model_entries(cfg)
    if not names:
        _fail("merge.models", "no models to merge", "give at least one model (merge.models=auto uses merge.domains)")
    resolve_weights(m.weights, names)
    for name, p in zip(names, paths):
        if not _auto(m.models) and not Path(p).is_dir():
            _fail(f"merge.models.{name}", f"{p} is not a directory", "point it at an HF model dir (with config.json)")
    if m.base != AUTO and not Path(m.base).is_dir():
        _fail("merge.base", f"{m.base} is not a directory", "point merge.base at an HF model dir, or use auto")


def _auto(v: Any) -> bool:
    return isinstance(v, str) and v == AUTO


def _name_of(path: str) -> str:
    p = Path(path)
    name = p.parent.name if p.name == "export" and p.parent.name else p.name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "model"


def model_entries(cfg) -> tuple[list[str], list[str]]:
    """The models' names and directories, in order."""
    m = cfg.merge
    if _auto(m.models):
        root = experiment_dir(cfg)
        return list(m.domains), [str(run_export(root, f"grpo/{d}")) for d in m.domains]
    if isinstance(m.models, str):
        _fail("merge.models", f"{m.models!r} is neither auto, a list nor a map",
              "use merge.models=auto, merge.models=[dir1,dir2] or merge.models={math:dir1,code:dir2}")
    if hasattr(m.models, "items"):
        return [str(k) for k in m.models], [str(v) for v in m.models.values()]
    paths = [str(p) for p in m.models]
    plain = [_name_of(p) for p in paths]
    seen: dict[str, int] = {}
    names = []
    for n in plain:  # unique names: DARE's seeds and the merge record use them
        seen[n] = seen.get(n, 0) + 1
        names.append(f"{n}.{seen[n]}" if plain.count(n) > 1 else n)
    return names, paths


def resolve_weights(weights: Any, names: list[str]) -> list[float]:
    if weights is None:
        return [1.0] * len(names)
    if _num_ok(weights):
        return [float(weights)] * len(names)
    if hasattr(weights, "items"):
        unknown = sorted(set(map(str, weights)) - set(names))
        if unknown:
            _fail("merge.weights", f"weights for unknown model(s) {unknown}", f"use the model names {names}")
        w = {str(k): v for k, v in weights.items()}
        out = [w.get(n, 1.0) for n in names]
    elif isinstance(weights, str):
        _fail("merge.weights", f"{weights!r} is not a weight", "use a number, a list or a {name: weight} map")
    else:
        out = list(weights)
        if len(out) != len(names):
            _fail("merge.weights", f"{len(out)} weights for {len(names)} models ({names})",
                  "give one weight per model, or a {name: weight} map")
    for n, v in zip(names, out):
        if not _num_ok(v):
            _fail(f"merge.weights.{n}", f"must be a finite number, got {v!r}", "e.g. 1.0")
    return [float(v) for v in out]


def base_dir(cfg) -> Path:
    m = cfg.merge
    if m.base == AUTO:
        return run_export(experiment_dir(cfg), f"sft/{m.base_run}")
    return Path(m.base).absolute()
