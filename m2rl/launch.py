"""`python -m m2rl.launch [-m] key=value ...`: the Hydra entry of every m2rl job.

With `-m` (multirun) each combination becomes one job through the launcher that
`cluster` selects (submitit's local executor by default, Slurm with cluster=slurm);
every job config is validated, and finished runs are dropped, before anything is
submitted. Without `-m` the one job runs in this process.
"""
from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from m2rl import jobs
from m2rl.errors import ConfigError, ConfigMismatch

jobs.register()
CONFIG_PATH = str((__import__("pathlib").Path(__file__).parent.parent / "configs").resolve())


def run_task(cfg: DictConfig) -> dict:
    """What each job executes (in this process, or inside a submitit job)."""
    from m2rl.runtime import run_job

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    stage = jobs.validate(cfg, check_cluster=False)
    return run_job(cfg, stage.run, stage.mutable)


def check_group_choices(argv: list[str]) -> None:
    """`domain=foo` names a config file that does not exist: say so in m2rl's words."""
    from pathlib import Path

    for arg in argv:
        key, eq, value = arg.lstrip("+~").partition("=")
        group = Path(CONFIG_PATH) / key
        if not eq or "." in key or "/" in key or not group.is_dir():
            continue
        choices = sorted(p.stem for p in group.glob("*.yaml"))
        for v in value.split(","):
            if v and v not in choices:
                fail(ConfigError(key, f"unknown {key} {v!r}", f"use one of {', '.join(choices)} "
                                          f"(e.g. {key}={choices[0]}), or add configs/{key}/{v}.yaml"))


def fail(err: Exception) -> None:
    print(f"m2rl: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> dict | None:
    try:
        return run_task(cfg)
    except (ConfigError, ConfigMismatch) as err:
        fail(err)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    main()
