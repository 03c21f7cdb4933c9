"""What a launch submits: validate every job config of a sweep, then drop finished runs.

Used by the Hydra launchers before anything reaches an executor, so that a bad value
stops the whole sweep with one message and a relaunch of a finished sweep submits
nothing.
"""
from __future__ import annotations

import logging
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from m2rl import jobs
from m2rl.config import sbatch_extras
from m2rl.errors import ConfigError
from m2rl.runtime import rundir

log = logging.getLogger("m2rl.sweep")


def launcher_params(cfg: DictConfig) -> dict:
    """The submitit launcher parameters of one job: its resolved `hydra.launcher` (the
    cluster.* values it interpolates) plus what cannot be interpolated (sbatch_extras)."""
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_", None)
    for key, value in sbatch_extras(cfg).items():
        if value:
            params[key] = {**(params.get(key) or {}), **value} if isinstance(value, dict) else value
    return params


def group_by_resources(configs: Sequence[DictConfig]) -> list[tuple[dict, list[int]]]:
    """(launcher params, indices of the jobs that have them): runs of consecutive jobs with
    the same resources, in the sweep's order (so each run keeps contiguous job numbers), one
    Slurm array each."""
    groups: list[tuple[dict, list[int]]] = []
    for i, cfg in enumerate(configs):
        params = launcher_params(cfg)
        if groups and groups[-1][0] == params:
            groups[-1][1].append(i)
        else:
            groups.append((params, [i]))
    return groups


def jobs_to_submit(configs: Sequence[DictConfig], check_cluster: bool) -> list[int]:
    """Indices of the jobs to submit. Raises ConfigError / ConfigMismatch."""
    seen: dict[str, int] = {}
    keep = []
    for i, cfg in enumerate(configs):
        stage = jobs.validate(cfg, check_cluster=check_cluster and i == 0)
        path = str(rundir.run_dir(cfg))
        if path in seen:
            raise ConfigError("run.name", f"jobs {seen[path]} and {i} of this sweep share the run dir {path}",
                              "sweep over a key that is part of the run dir (stage, domain, run.name)")
        seen[path] = i
        state = rundir.inspect(cfg, stage.mutable)
        if state.done:
            log.info("skip (finished): %s", state.path)
        else:
            log.info("%s: %s", "resume" if state.exists else "new", state.path)
            keep.append(i)
    return keep
