"""What `eval.model` names, resolved to the models to evaluate (`Target`s).

* `all`: the base model, then every `<stage>/<run>/export` of the experiment (sft, grpo,
  merge, opd runs, in that order) that holds a model.
* `base`: the model config's model (`model=...`), the one every run starts from.
* `<stage>/<run>`: that run's `export/` in this experiment (it must exist at launch).
* an existing directory: an HF model dir; anything else: a hub id.
* a list of these: each in turn, in one job (one engine start for one architecture).

Each target's results go to `<exp>/eval/<slug>/` (`slug`: `grpo/math` -> `grpo-math`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m2rl.errors import ConfigError
from m2rl.runtime.rundir import arm as arm_of
from m2rl.runtime.rundir import MODEL_STAGES, experiment_dir, has_model, is_run_key, run_export, slug

BASE = "base"


@dataclass(frozen=True)
class Target:
    label: str            # "base", "grpo/math", or the dir / hub id
    path: str | None      # an HF dir or hub id; None for the base model until the job builds it
    model_run: str | None  # "<stage>/<run>" of this experiment
    stage: str | None
    arm: str

    @property
    def slug(self) -> str:
        return slug(self.label)


def _run_target(exp: Path, key: str) -> Target:
    from omegaconf import OmegaConf

    run = exp / key
    stage = key.split("/", 1)[0]
    try:
        arm = arm_of(OmegaConf.load(run / "config.yaml"))
    except (OSError, ValueError, AttributeError):
        arm = {"sft": "base", "opd": "opd"}.get(stage, "separate")
    return Target(key, str(run_export(exp, key)), key, stage, arm)


def resolve(cfg) -> list[Target]:
    """The models of `eval.model` (one name or a list of them), in order, each once;
    ConfigError when one cannot be found."""
    model = cfg.eval.model
    names = [model] if isinstance(model, str) else list(model or [])
    if not names:
        raise ConfigError("eval.model", "no model to evaluate", "e.g. eval.model=all or eval.model=grpo/math")
    out: list[Target] = []
    for name in names:
        out += [t for t in _resolve_one(cfg, str(name)) if t.label not in {o.label for o in out}]
    return out


def _resolve_one(cfg, name: str) -> list[Target]:
    exp = experiment_dir(cfg)
    if name in ("all", BASE):
        out = [Target(BASE, None, None, None, "base")]
        if name == "all":
            for stage in MODEL_STAGES:
                keys = sorted(f"{stage}/{p.name}" for p in (exp / stage).glob("*"))
                out += [_run_target(exp, k) for k in keys if has_model(run_export(exp, k))]
        return out
    if is_run_key(name):
        if not has_model(run_export(exp, name)):
            raise ConfigError("eval.model", f"{name} has no exported model at {run_export(exp, name)}",
                              f"run it first (python -m m2rl.launch stage={name.split('/')[0]} ...), or name "
                              f"another run: eval.model=all evaluates every export there is")
        return [_run_target(exp, name)]
    if Path(name).exists():
        if not has_model(name):
            raise ConfigError("eval.model", f"{name} is not an HF model dir (no config.json)",
                              "point it at a dir with config.json and the weights, e.g. <run>/export")
        return [Target(name, str(Path(name).absolute()), None, None, "outside")]
    return [Target(name, name, None, None, "outside")]  # a hub id: vLLM fetches it (or finds it cached)
