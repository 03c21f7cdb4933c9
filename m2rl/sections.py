"""Config sections resolved to what the code uses: typed dataclasses out of the run's
OmegaConf config, and the model a stage starts from. Shared by every stage, so that no
stage borrows another's helpers.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path


def as_dataclass(cls, node):
    """A typed config section from an OmegaConf node, a dict or the dataclass itself
    (keys the dataclass lacks are dropped; None gives the defaults)."""
    if node is None:
        return cls()
    if isinstance(node, cls):
        return node
    if not isinstance(node, dict):
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(node, resolve=True)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in node.items() if k in names})


def model_config(cfg):
    """The run's ModelConfig (`model:` section; the tiny model when absent)."""
    from m2rl.models import ModelConfig

    return as_dataclass(ModelConfig, cfg.get("model"))


def data_config(cfg):
    """The run's DataConfig (`data:` section; the generators' defaults when absent)."""
    from m2rl.data import DataConfig

    return as_dataclass(DataConfig, cfg.get("data"))


def resolve_init(cfg, init_from: str | None, field: str) -> Path | str | None:
    """What a training stage's `init_from` names: a run of this experiment (`sft/multi`:
    its export/, which must hold a model), an HF dir or a hub id as given, or None for the
    model config's model (the raw model). ConfigError, naming `field`, for a run with no
    export yet; used by validation at launch and by the job alike."""
    from m2rl.errors import ConfigError
    from m2rl.runtime.rundir import experiment_dir, has_model, is_run_key, run_export

    if not init_from:
        return None
    if is_run_key(init_from):
        path = run_export(experiment_dir(cfg), init_from)
        if not has_model(path):
            stage, run = init_from.split("/")
            raise ConfigError(field, f"{init_from} has no exported model yet (no {path / 'config.json'})",
                              f"run it first (python -m m2rl.launch stage={stage} domain={run}), or point "
                              f"{field} at an HF model dir")
        return path
    return init_from


def start_model(cfg, init_from: str | None, field: str) -> Path | str:
    """The model a training stage starts from: what `init_from` names (`resolve_init`),
    or the run's model config, prepared (built or converted) once."""
    from m2rl.models import prepare_model

    return resolve_init(cfg, init_from, field) or prepare_model(model_config(cfg))


def describe_start(cfg, init_from: str | None, field: str, path) -> str:
    """One line for the job's log saying what it starts from (`path`: what `start_model`
    gave), and so what a raw start is."""
    if not init_from:
        return (f"the raw {model_config(cfg).name} model ({field} unset: no SFT before this run; "
                f"{field}=sft/<run> starts from an SFT export)")
    return f"{init_from} ({path})" if str(path) != str(init_from) else str(path)
