"""The sections every m2rl run shares (stage, domain, experiment, paths, run, cluster,
model, data) and their validation. Knows no stage: each stage owns a section of its own,
which m2rl.jobs adds to `SharedConfig` to build the full schema (`m2rl.jobs.schema()`),
and validates after `validate()` here.

Hydra composes `configs/` on top of that schema, so a misspelt key or a wrong type fails
at composition; `validate()` adds the checks a type cannot express.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from m2rl.data.config import DataConfig
from m2rl.errors import ConfigError
from m2rl.models import ModelConfig

DOMAINS = ("math", "code", "science", "if", "multi")
CLUSTERS = ("local", "slurm")


@dataclass
class StageConfig:
    name: str = "grpo"


@dataclass
class DomainConfig:
    name: str = "math"  # domain=multi mixes the domains by data.mix (None: natural proportions)


@dataclass
class ExperimentConfig:
    name: str = "default"
    seed: int = 0


@dataclass
class PathsConfig:
    root: str = "runs"  # every run lives in <root>/<experiment>/<stage>/<run.name>


@dataclass
class RunConfig:
    name: str = "${domain.name}"  # the last level of the run dir
    save_every: int = 10  # steps between periodic checkpoints
    keep_last: int = 2  # checkpoints kept on disk
    time_margin_s: float = 10.0  # slack kept before the allocation's end
    allow_config_change: bool = False  # resume a run whose saved config differs


@dataclass
class ClusterConfig:
    name: str = "local"
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: Optional[int] = None
    timeout_min: int = 60
    requeue: bool = True
    signal_delay_s: int = 120
    max_num_timeout: int = 100
    array_parallelism: int = 256
    setup: list[str] = field(default_factory=list)  # shell lines run in sbatch before srun
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # more sbatch flags


@dataclass
class SharedConfig:
    """What every run has; m2rl.jobs.schema() adds a section per stage."""

    stage: StageConfig = field(default_factory=StageConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)


def _check(ok: bool, field: str, problem: str, fix: str) -> None:
    if not ok:
        raise ConfigError(field, problem, fix)


def validate(cfg: DictConfig, check_cluster: bool = True) -> None:
    """Raise ConfigError for the first bad field of the shared sections (m2rl.jobs.validate
    adds the stage's own). Needs no cluster unless check_cluster."""
    _check(cfg.domain.name in DOMAINS, "domain.name", f"unknown domain {cfg.domain.name!r}",
           f"use one of {', '.join(DOMAINS)} (e.g. domain=math)")
    if cfg.data.mix is not None:
        for k, v in cfg.data.mix.items():
            _check(k in DOMAINS[:-1], f"data.mix.{k}", f"unknown domain {k!r} in the mix",
                   f"mix only {', '.join(DOMAINS[:-1])}")
            _check(v >= 0, f"data.mix.{k}", f"negative proportion {v}", "use a proportion >= 0")
    _check(cfg.model.source in ("tiny", "gguf", "hf"), "model.source", f"unknown source {cfg.model.source!r}",
           "use tiny (built offline), gguf (a .gguf file or package) or hf (hub id or local dir)")
    _check(cfg.model.source == "tiny" or bool(cfg.model.path), "model.path",
           f"model.source={cfg.model.source} needs a path", "set model.path to a hub id or a local directory")
    _check(cfg.experiment.name not in ("", ".", "..") and "/" not in cfg.experiment.name,
           "experiment.name", f"{cfg.experiment.name!r} is not a plain directory name",
           "use letters, digits, '-' or '_' (e.g. experiment.name=mix_vs_merge)")
    c = cfg.cluster
    _check(c.name in CLUSTERS, "cluster.name", f"unknown cluster kind {c.name!r}",
           "use cluster=local (this machine) or cluster=slurm")
    for key in ("nodes", "tasks_per_node", "cpus_per_task", "timeout_min"):
        _check(c[key] >= 1, f"cluster.{key}", f"must be >= 1, got {c[key]}", f"set cluster.{key}=1 or more")
    _check(c.gpus_per_node >= 0, "cluster.gpus_per_node", f"must be >= 0, got {c.gpus_per_node}",
           "set cluster.gpus_per_node=0 for a CPU job, or the GPUs per node you want")
    _check(c.mem_gb is None or c.mem_gb > 0, "cluster.mem_gb", f"must be > 0, got {c.mem_gb}",
           "set cluster.mem_gb to the GB per node, or null for the partition default")
    _check(c.signal_delay_s >= 0, "cluster.signal_delay_s", "must be >= 0", "e.g. cluster.signal_delay_s=120")
    r = cfg.run
    _check(r.save_every >= 1, "run.save_every", f"must be >= 1, got {r.save_every}", "e.g. run.save_every=10")
    _check(r.keep_last >= 1, "run.keep_last", f"must be >= 1, got {r.keep_last}", "e.g. run.keep_last=2")
    if c.name == "slurm":
        _check(bool(c.partition), "cluster.partition", "cluster=slurm needs a partition",
               "add cluster.partition=<name> (see `sinfo -s` for the partitions you may use)")
        if check_cluster:
            check_slurm_reachable()


def check_slurm_reachable() -> None:
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        raise ConfigError("cluster", "cluster=slurm but the Slurm client tools (sbatch, scontrol) are not on PATH",
                          "run on a Slurm login node, or use cluster=local")
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        text = (out.stdout + out.stderr).strip()
    except subprocess.TimeoutExpired:
        text, out = "no answer in 30 s", None
    if out is None or out.returncode != 0 or "UP" not in text:
        raise ConfigError("cluster", f"cluster=slurm but the Slurm controller does not answer ({text})",
                          "start it (locally: `bash slurm/cluster.sh up`) or use cluster=local")


def sbatch_extras(cfg: DictConfig) -> dict:
    """Launcher parameters that hydra-submitit-launcher cannot take by interpolation."""
    extra = dict(OmegaConf.to_container(cfg.cluster.additional_parameters, resolve=True))
    if cfg.cluster.requeue:
        extra.setdefault("requeue", True)
    # srun (which runs the tasks) ends the whole step when any task exits non-zero: a dead
    # role (a rollout worker, a learner) must not leave the others blocked in a collective
    # until dist_timeout_s. The env var is srun's own spelling of --kill-on-bad-exit=1.
    setup = ["export SLURM_KILL_BAD_EXIT=1", *cfg.cluster.setup]
    return {"additional_parameters": extra, "setup": setup}
