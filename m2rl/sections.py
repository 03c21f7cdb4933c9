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


def start_model(cfg, init_from: str | None) -> Path | str:
    """The model a training stage starts from: `init_from` (an HF dir or hub id, e.g.
    an SFT run's export) or the run's model config, prepared (built or converted) once."""
    from m2rl.models import prepare_model

    return init_from or prepare_model(model_config(cfg))
