"""The `merge` stage: per-domain RL checkpoints merged onto their base, streaming.

    python -m m2rl.launch stage=merge merge.method=ties               # paper semantics
    python -m m2rl.launch stage=merge merge.method=dare_ties merge.semantics=mergekit \\
        merge.base=/ckpt/sft merge.models='{math:/ckpt/math,code:/ckpt/code}'

Methods: average, task_arithmetic, ties, dare_ta, dare_ties, sce; each under two
documented semantics (`paper`: the study's merge code; `mergekit`: mergekit's
definitions, which tests check against mergekit itself): see `methods.py`.

Inputs (`merge.base`, `merge.models`, "auto" by default) are HF model dirs with
safetensors weights; the output is `<run_dir>/export/`: sharded safetensors with an
index, the base's config, tokenizer and generation config, and `merge_record.json`
(method, parameters, inputs and their content hashes). Inputs are checked from their
headers before anything is read; values are checked while streaming.

Threads: `merge.threads` (null, the default: every core the job may run on). With 2 or
more, the next chunk is read while this one is computed and merged chunks are written
behind (one thread each); torch computes on the cores left over.

Restarts: a merge is restartable from scratch, not resumable. It never checkpoints; on
a preemption notice it stops between tensors without publishing anything, and the
requeued attempt starts over (removing the temp dir a killed attempt left behind).
"""
from __future__ import annotations

import logging
from pathlib import Path

from m2rl.errors import ConfigError
from m2rl.stage import Layout, Stage

# Only the config module here: the launcher imports this package to build the schema, so
# torch and the engine load on first use.
from .config import METHODS, RECORD_NAME, SEMANTICS, MergeConfig, base_dir, model_entries, resolve_weights
from .config import validate as _validate_values

__all__ = ["MergeConfig", "METHODS", "SEMANTICS", "RECORD_NAME", "STAGE", "merge", "run", "validate"]
log = logging.getLogger("m2rl.merge")
INPUT_FIX = ("merge inputs must be HF safetensors dirs of one architecture and vocabulary, fine-tuned from "
             "merge.base (set merge.base / merge.models, or finish the sft and grpo runs they default to)")


def merge(base: str | Path, models: dict[str, str | Path], out: str | Path, method: str = "ties",
          semantics: str = "paper", weights: list[float] | None = None, lam: float = 1.0,
          density: float = 0.2, drop_p: float = 0.2, select_topk: float = 1.0, normalize: bool | None = None,
          seed: int = 0, dtype: str = "auto", chunk_mb: float = 8, shard_mb: float = 2000,
          progress: bool = False, should_stop=None, threads: int | None = None) -> dict:
    """Merge `models` ({name: dir}) onto `base` into the HF dir `out`; returns the record.
    `threads`: None = every core this process may run on."""
    from .engine import Merger, chunk_elems_for
    from .inputs import open_inputs
    from .methods import Recipe

    recipe = Recipe(method, semantics, tuple(models), tuple(weights or [1.0] * len(models)), lam, density,
                    drop_p, select_topk, normalize, seed)
    inputs = open_inputs(Path(base), {k: Path(v) for k, v in models.items()})
    try:
        merger = Merger(recipe, inputs, chunk_elems_for(chunk_mb), dtype, int(shard_mb * (1 << 20)),
                        progress, should_stop, threads)
        return merger.run(Path(out))
    finally:
        inputs.close()


def _inputs(cfg) -> tuple[Path, dict[str, Path]]:
    names, paths = model_entries(cfg)
    return base_dir(cfg), {n: Path(p).absolute() for n, p in zip(names, paths)}


def validate(cfg, layout: Layout) -> None:
    """Config values; and, when every input dir exists already, the inputs themselves
    (architectures, vocabularies, tensors), before anything is submitted."""
    from .inputs import open_inputs
    from .stio import InputError

    _validate_values(cfg)
    base, models = _inputs(cfg)
    if base.is_dir() and all(p.is_dir() for p in models.values()):
        try:
            open_inputs(base, models).close()
        except InputError as err:
            raise ConfigError(err.field, str(err), INPUT_FIX) from None


def run(ctx) -> dict:
    from m2rl.runtime import Interrupted

    from .engine import Stopped
    from .stio import InputError

    cfg, m = ctx.cfg, ctx.cfg.merge
    ctx.resume()  # no checkpoints: this records the attempt's start
    if not ctx.dist.is_writer:
        return {"step": 0, "skipped": "only rank 0 merges"}
    base, models = _inputs(cfg)
    missing = [str(p) for p in [base, *models.values()] if not p.is_dir()]
    if missing:
        raise ConfigError("merge.models" if str(base) not in missing else "merge.base",
                          f"input dir(s) not found: {', '.join(missing)}",
                          "finish the runs that export them (stage=sft, stage=grpo) first, or point "
                          "merge.base / merge.models at existing HF model dirs")
    names = list(models)
    try:
        record = merge(base, models, ctx.run_dir / "export", m.method, m.semantics,
                       resolve_weights(m.weights, names), m.lam, m.density, m.drop_p, m.select_topk, m.normalize,
                       cfg.experiment.seed if m.seed is None else m.seed, m.dtype, m.chunk_mb, m.shard_mb,
                       progress=True, should_stop=lambda: ctx.preemption.requested, threads=m.threads)
    except InputError as err:
        raise ConfigError(err.field, str(err), INPUT_FIX) from None
    except Stopped:
        raise Interrupted("preempted", 0) from None
    log.info("merged %d models with %s (%s) into %s in %.1f s", len(names), m.method, m.semantics,
             ctx.run_dir / "export", record["seconds"])
    return {"step": 1, "export": str(ctx.run_dir / "export"), "seconds": record["seconds"],
            "method": m.method, "semantics": m.semantics}


STAGE = Stage("merge", run, schema=MergeConfig, validate=validate,
              reads=("merge.base: the SFT export (auto: <exp>/sft/<merge.base_run>/export)",
                     "merge.models: the task models (auto: <exp>/grpo/<domain>/export per merge.domains)"),
              writes=("export/: the merged model (sharded safetensors + index, config, tokenizer) and "
                      f"{RECORD_NAME} (method, parameters, inputs and their hashes)",),
              mutable=("merge.chunk_mb", "merge.shard_mb", "merge.threads"))
