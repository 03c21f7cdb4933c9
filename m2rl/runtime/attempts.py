"""One JSON record per attempt of a job, written atomically by rank 0.

`<run_dir>/attempts/attempt-NNNN.json` is created when the attempt starts (state
`running`), rewritten at every checkpoint (so an attempt that is SIGKILLed still tells
how far it got and when it last saved) and at the end (state and exit reason). The GPU
hour ledger reads these and reconciles them with Slurm accounting.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import atomic
from .dist import node_name

SCHEMA = 1
ATTEMPTS_DIR = "attempts"  # <run dir>/attempts/attempt-NNNN.json
STATES = ("running", "completed", "preempted", "timeout", "failed", "cancelled", "interrupted")


@dataclass
class Attempt:
    attempt: int
    run: dict                       # experiment, stage, domain, run_name, arm, run_dir
    executor: str                   # slurm | local | inline
    job_id: str | None = None       # submitit's id: "123" or "123_4" for array task 4
    slurm_job_id: str | None = None  # SLURM_JOB_ID (the raw id of this array task)
    array_job_id: str | None = None
    array_task_id: int | None = None
    restart_count: int = 0          # SLURM_RESTART_COUNT
    cluster: str | None = field(default_factory=lambda: os.environ.get("SLURM_CLUSTER_NAME"))
    host: str = field(default_factory=node_name)  # Slurm's node name (the job's first node), else the host
    pid: int = field(default_factory=os.getpid)
    partition: str | None = None
    nodes: int = 1
    gpus: int = 0                   # GPUs allocated to the whole job
    cpus: int = 1
    world_size: int = 1
    devices: str | None = field(default_factory=lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    heartbeat: float | None = None
    state: str = "running"
    exit_reason: str = ""
    step_start: int = 0
    step_end: int = 0
    first_step_time: float | None = None
    last_checkpoint_step: int | None = None
    last_checkpoint_time: float | None = None
    signal: str | None = None
    signal_time: float | None = None
    mean_step_s: float | None = None
    lost_work_s: float | None = None  # time since the last checkpoint when it ended
    schema: int = SCHEMA

    @property
    def steps_done(self) -> int:
        return self.step_end - self.step_start

    def to_json(self) -> dict:
        return {**asdict(self), "steps_done": self.steps_done}


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


def allocated_cpus(configured_per_node: int, nodes: int) -> int:
    """CPUs of the whole job: Slurm's SLURM_JOB_CPUS_PER_NODE ("72(x2),36" = 180) where it
    says, else SLURM_CPUS_ON_NODE or the configured count, times the nodes."""
    spec = os.environ.get("SLURM_JOB_CPUS_PER_NODE", "")
    m = re.fullmatch(r"\s*(\d+(\(x\d+\))?)(\s*,\s*\d+(\(x\d+\))?)*\s*", spec)
    if m:
        total = 0
        for part in spec.split(","):
            n, _, times = part.strip().partition("(x")
            total += int(n) * (int(times.rstrip(")")) if times else 1)
        return total
    return (_env_int("SLURM_CPUS_ON_NODE") or configured_per_node) * nodes


def allocated_gpus(configured_per_node: int, nodes: int) -> int:
    """GPUs of the whole job: Slurm's count where it says, else the configured count."""
    per_node = _env_int("SLURM_GPUS_ON_NODE")
    if per_node is None and os.environ.get("SLURM_JOB_ID") and os.environ.get("CUDA_VISIBLE_DEVICES"):
        per_node = len([d for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d])
    return (per_node if per_node is not None else configured_per_node) * nodes


class AttemptRecorder:
    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.dir = Path(run_dir) / ATTEMPTS_DIR
        self.enabled = enabled
        self.record: Attempt | None = None
        self.path: Path | None = None

    def existing(self) -> list[dict]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.glob("attempt-*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def start(self, run: dict, executor: str, configured_gpus_per_node: int, **kw) -> Attempt:
        configured_nodes, configured_cpus = kw.pop("nodes", 1), kw.pop("cpus", 1)  # cpus: per node
        nodes = _env_int("SLURM_JOB_NUM_NODES") or configured_nodes
        index = len(list(self.dir.glob("attempt-*.json"))) if self.dir.is_dir() else 0
        self.record = Attempt(
            attempt=index,
            run=run,
            executor=executor,
            slurm_job_id=os.environ.get("SLURM_JOB_ID"),
            array_job_id=os.environ.get("SLURM_ARRAY_JOB_ID"),
            array_task_id=_env_int("SLURM_ARRAY_TASK_ID"),
            restart_count=_env_int("SLURM_RESTART_COUNT") or 0,
            partition=os.environ.get("SLURM_JOB_PARTITION"),
            nodes=nodes,
            gpus=allocated_gpus(configured_gpus_per_node, nodes),
            cpus=allocated_cpus(configured_cpus, nodes),
            **kw,
        )
        if self.enabled:
            self._claim()
        return self.record

    def _claim(self) -> None:
        """Publish the first version of the record under a fresh attempt number: the whole
        record is written and fsynced first, then hard-linked to its name (atomic, fails if
        taken, NFS-safe), so no reader ever sees an empty record and racing attempts never
        share a number."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".claim-{os.getpid()}-{time.time_ns()}.json"
        atomic.write_json(tmp, self.record.to_json())
        try:
            while True:
                self.path = self.dir / f"attempt-{self.record.attempt:04d}.json"
                try:
                    os.link(tmp, self.path)
                    break
                except FileExistsError:
                    self.record.attempt += 1
                    atomic.write_json(tmp, self.record.to_json())
        finally:
            tmp.unlink(missing_ok=True)
        atomic.fsync_dir(self.dir)

    def write(self) -> None:
        if self.enabled and self.record is not None and self.path is not None:
            self.record.heartbeat = time.time()
            atomic.write_json(self.path, self.record.to_json())

    def checkpointed(self, step: int) -> None:
        if self.record is not None:
            self.record.last_checkpoint_step = step
            self.record.last_checkpoint_time = time.time()
            self.record.step_end = step
            self.write()

    def finish(self, state: str, reason: str, step: int) -> None:
        assert state in STATES, state
        r = self.record
        if r is None:
            return
        r.end_time = time.time()
        r.state, r.exit_reason, r.step_end = state, reason, max(step, r.step_end)
        since = r.last_checkpoint_time if r.last_checkpoint_time is not None else r.start_time
        r.lost_work_s = 0.0 if state == "completed" else max(0.0, r.end_time - since)
        self.write()
