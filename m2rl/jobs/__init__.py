"""The stage registry: `stage.name` -> its `Stage` (m2rl.stage; the protocol is in
README.md beside this file), the full config schema built from every stage's section,
and the validation of a job config before submission.

m2rl.config holds the sections every job shares and knows no stage; this module adds the
stages. Stage modules are imported by name, and import cheaply (their bodies load torch,
DeepSpeed, vLLM on first use).
"""
from __future__ import annotations

import dataclasses
import importlib
from functools import lru_cache

from m2rl import config as core
from m2rl.errors import ConfigError
from m2rl.stage import Layout, Stage

# stage.name -> the module whose STAGE declares it
REGISTRY = {
    "toy": "m2rl.jobs.toy",
    "sft": "m2rl.jobs.sft",
    "grpo": "m2rl.jobs.grpo",
    "merge": "m2rl.jobs.merge",
    "report": "m2rl.jobs.report",
    "eval": "m2rl.jobs.eval",
}
# stages with a config group (configs/stage/) and no body yet
PLANNED = ("opd",)

__all__ = ["REGISTRY", "PLANNED", "Layout", "Stage", "stage", "stages", "schema", "register", "validate"]


def stage(name: str) -> Stage:
    """The stage called `name`; ConfigError for an unknown or unbuilt one."""
    if name in PLANNED:
        raise ConfigError("stage.name", f"the {name!r} job body is not built yet",
                          f"use one of the stages that exist: {', '.join(REGISTRY)}")
    if name not in REGISTRY:
        raise ConfigError("stage.name", f"unknown stage {name!r}",
                          f"use one of {', '.join([*REGISTRY, *PLANNED])} (e.g. stage=grpo)")
    return importlib.import_module(REGISTRY[name]).STAGE


def stages() -> list[Stage]:
    return [stage(name) for name in REGISTRY]


@lru_cache(maxsize=1)
def schema() -> type:
    """The whole run config: m2rl.config's shared sections plus one section per stage."""
    fields = [(s.name, s.schema, dataclasses.field(default_factory=s.schema)) for s in stages() if s.schema]
    cls = dataclasses.make_dataclass("M2RLConfig", fields, bases=(core.SharedConfig,))
    cls.__module__ = __name__  # importable as m2rl.jobs.M2RLConfig: job configs are pickled to the jobs
    return cls


def __getattr__(name: str):
    if name == "M2RLConfig":
        return schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Put the schema where configs/config.yaml finds it (`m2rl_schema`)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="m2rl_schema", node=schema())


def validate(cfg, check_cluster: bool = True) -> Stage:
    """Raise ConfigError for the first bad field of a job config: the stage's name, the
    shared sections, then the stage's own checks against the resolved layout. Needs no
    cluster unless check_cluster. Returns the stage."""
    st = stage(cfg.stage.name)
    core.validate(cfg, check_cluster=check_cluster)
    if st.validate is not None:
        st.validate(cfg, Layout.of(cfg))
    return st
