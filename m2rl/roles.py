"""The role plan of a multi-role stage: which task of the allocation does what (learner,
rollout worker, both, or nothing), and where learner 0 listens for the others.

One submitit job, N tasks (srun under Slurm, the local executor here). The tasks split
into two roles, sized by config (`role_plan`):

* one node: the last `grpo.rollout_workers` tasks are rollout workers (one vLLM engine
  each, `grpo.tensor_parallel_size` GPUs), the others are learners (one GPU each, ranks
  of one DeepSpeed data-parallel group). Learners take GPUs 0..L-1, engines the next
  ones; a node with fewer GPUs than that shares them round-robin (e.g. a learner and an
  engine on one GPU).
* several nodes: whole nodes per role. The last ceil(rollout_workers / engines per node)
  nodes hold the engines (gpus_per_node // tensor_parallel_size per node, one task each;
  surplus tasks there are idle), every task of the other nodes is a learner.
* one task in all: "colocated", the learner and the engine live in one process.

Learner 0 is always global rank 0 (the run's writer) and drives the loop; see
m2rl.rollout.transport for how it talks to the rollout workers, and `endpoints` for the
ports.
"""
from __future__ import annotations

import json
import math
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from m2rl.errors import RoleError
from m2rl.runtime import atomic

KINDS = ("learner", "rollout", "colocated", "idle")


@dataclass(frozen=True)
class Role:
    kind: str  # one of KINDS
    index: int  # rank among learners, or engine index among rollout workers
    learners: int  # learner tasks in the job
    rollouts: int  # rollout tasks in the job (0 when colocated)
    gpus: tuple[int, ...] = ()  # ordinals in the node's visible GPU list this task uses

    @property
    def has_learner(self) -> bool:
        return self.kind in ("learner", "colocated")

    @property
    def has_engine(self) -> bool:
        return self.kind in ("rollout", "colocated")

    @property
    def is_driver(self) -> bool:
        return self.has_learner and self.index == 0


def role_plan(world: int, num_nodes: int, gpus_per_node: int, rollout_workers: int, tp: int) -> list[Role]:
    """The role of every global rank (block distribution: rank = node * per_node + local)."""
    if world < 1 or num_nodes < 1 or world % num_nodes:
        raise RoleError(f"{world} tasks do not spread evenly over {num_nodes} nodes")
    if tp < 1:
        raise RoleError(f"tensor_parallel_size must be >= 1, got {tp}")
    if gpus_per_node and tp > gpus_per_node:
        raise RoleError(f"tensor_parallel_size={tp} needs {tp} GPUs per engine, a node has {gpus_per_node}")
    if world == 1:
        return [Role("colocated", 0, 1, 0, tuple(range(tp)) if gpus_per_node else ())]
    per_node = world // num_nodes
    if rollout_workers < 1:
        raise RoleError(f"{world} tasks but rollout_workers={rollout_workers}: set grpo.rollout_workers >= 1 "
                        "(or run a single task, which colocates learner and engine)")
    if num_nodes == 1:
        n_learn = world - rollout_workers
        if n_learn < 1:
            raise RoleError(f"{world} tasks leave no learner after {rollout_workers} rollout workers")
        need = n_learn + rollout_workers * tp
        gpu = (lambda i: i) if gpus_per_node >= need else (lambda i: i % gpus_per_node)
        roles = [Role("learner", i, n_learn, rollout_workers, (gpu(i),) if gpus_per_node else ())
                 for i in range(n_learn)]
        for j in range(rollout_workers):
            first = n_learn + j * tp
            gpus = tuple(gpu(first + t) for t in range(tp)) if gpus_per_node else ()
            roles.append(Role("rollout", j, n_learn, rollout_workers, gpus))
        return roles
    engines_per_node = gpus_per_node // tp if gpus_per_node else per_node
    engines_per_node = min(engines_per_node, per_node)
    rollout_nodes = math.ceil(rollout_workers / engines_per_node)
    learner_nodes = num_nodes - rollout_nodes
    if learner_nodes < 1:
        raise RoleError(f"{rollout_workers} engines fill all {num_nodes} nodes ({engines_per_node} per node): "
                        "add nodes or lower grpo.rollout_workers")
    n_learn = learner_nodes * per_node
    roles = []
    for node in range(num_nodes):
        for local in range(per_node):
            if node < learner_nodes:
                gpus = (local % gpus_per_node,) if gpus_per_node else ()
                roles.append(Role("learner", node * per_node + local, n_learn, rollout_workers, gpus))
                continue
            e = (node - learner_nodes) * engines_per_node + local
            if local < engines_per_node and e < rollout_workers:
                gpus = tuple(range(local * tp, (local + 1) * tp)) if gpus_per_node else ()
                roles.append(Role("rollout", e, n_learn, rollout_workers, gpus))
            else:
                roles.append(Role("idle", e, n_learn, rollout_workers))
    return roles


def separate_gpus(world: int, num_nodes: int, gpus_per_node: int, rollout_workers: int, tp: int) -> bool:
    """Whether no engine shares a GPU with a learner (NCCL needs one GPU per rank)."""
    if not gpus_per_node or world == 1:
        return False
    return num_nodes > 1 or gpus_per_node >= (world - rollout_workers) + rollout_workers * tp


def visible_gpus() -> list[str]:
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is not None:
        return [v for v in vis.split(",") if v.strip() != ""]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - no torch cuda
        return []


def bind_devices(role: Role) -> None:
    """Point this task at its GPUs before anything touches CUDA.

    Learners keep the node's visible list and take LOCAL_RANK = their GPU's ordinal (the
    torchrun convention DeepSpeed follows; see `learner_env`); engines see only their own
    GPUs (vLLM uses the first tensor_parallel_size visible ones)."""
    if not role.gpus:
        return
    vis = visible_gpus()
    if role.kind == "rollout" and vis:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(vis[g % len(vis)] for g in role.gpus)


@dataclass(frozen=True)
class Endpoints:
    """Where learner 0 listens: the learners' process group on `port`, the rollout
    workers' control channel on `port + 1`, the NCCL weight broadcast on `port + 2`."""

    host: str
    port: int
    key: str  # shared by the job's tasks (and its requeued attempts); authenticates channels

    @property
    def channel_port(self) -> int:
        return self.port + 1

    @property
    def nccl_port(self) -> int:
        return self.port + 2


def _job_env():
    try:
        import submitit

        return submitit.JobEnvironment()
    except Exception:  # not inside a submitit job
        return None


def endpoints(num_nodes: int, salt: str = "", publish_dir: Path | None = None, rank: int = 0,
              wait_s: float = 900.0) -> Endpoints:
    """Host = the allocation's first node (loopback on one node). Port: M2RL_MASTER_PORT,
    else, with `publish_dir`, three free consecutive ports that task 0 (on that host) finds
    and publishes there for this attempt, the other tasks waiting for the file (two jobs on
    the same nodes never collide); without it, one derived from the job id."""
    ends = _endpoints(num_nodes, salt)
    if publish_dir is None or os.environ.get("M2RL_MASTER_PORT"):
        return ends
    path = Path(publish_dir) / ENDPOINTS_DIR / f"{_attempt_key()}.json"
    if rank == 0:
        base = free_base_port(ends.port)
        atomic.write_json(path, {"host": ends.host, "port": base})
    else:
        deadline = time.time() + wait_s
        while not path.is_file():
            if time.time() > deadline:
                raise RuntimeError(f"task 0 did not publish its ports in {path} within {wait_s:.0f} s")
            time.sleep(0.2)
        base = int(json.loads(path.read_text())["port"])
    return Endpoints(ends.host, base, ends.key)


ENDPOINTS_DIR = ".endpoints"  # <run dir>/.endpoints/<job id>-<restart>.json: one file per attempt


def _attempt_key() -> str:
    job = _job_env()
    job_id = str(job.job_id) if job is not None else os.environ.get("SLURM_JOB_ID", str(os.getppid()))
    return f"{job_id}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"


def free_base_port(start: int, span: int = 3) -> int:
    """The first base port from `start` (in steps of 4, wrapping in 20000-59000) whose `span`
    consecutive ports can all be bound on every interface of this host now."""
    def bindable(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
                return True
            except OSError:
                return False

    for i in range(2000):
        base = 20000 + (start - 20000 + 4 * i) % 39000
        if all(bindable(base + k) for k in range(span)):
            return base
    raise RuntimeError("no free ports in 20000-59000 on this host")


def _endpoints(num_nodes: int, salt: str = "") -> Endpoints:
    job = _job_env()
    job_id = str(job.job_id) if job is not None else os.environ.get("SLURM_JOB_ID", str(os.getpid()))
    host = os.environ.get("M2RL_MASTER_ADDR")
    if not host:
        if num_nodes > 1 and job is not None:
            host = job.hostnames[0]
        elif num_nodes > 1:
            host = os.environ.get("MASTER_ADDR") or socket.gethostname()
        else:
            host = "127.0.0.1"
    port = os.environ.get("M2RL_MASTER_PORT")
    base = int(port) if port else random.Random(f"m2rl-grpo:{job_id}").randrange(20000, 59000, 4)
    return Endpoints(host, base, f"m2rl-grpo:{job_id}:{salt}")


def learner_env(role: Role, ends: Endpoints, local_rank: int) -> dict[str, str]:
    """The torch.distributed environment of the learners' own process group (learners
    only, so that DeepSpeed's collectives and the runtime's barriers never wait on an
    engine)."""
    return {"RANK": str(role.index), "WORLD_SIZE": str(role.learners), "MASTER_ADDR": ends.host,
            "MASTER_PORT": str(ends.port), "LOCAL_RANK": str(role.gpus[0] if role.gpus else local_rank)}


def unused_gpus(roles: list[Role], num_nodes: int, gpus_per_node: int) -> dict[int, list[int]]:
    """Per node, the GPUs of the allocation that no task of the plan uses."""
    per_node = len(roles) // num_nodes
    out = {}
    for node in range(num_nodes):
        used = {g for r in roles[node * per_node:(node + 1) * per_node] for g in r.gpus}
        free = [g for g in range(gpus_per_node) if g not in used]
        if free:
            out[node] = free
    return out


def shared_gpus(roles: list[Role], num_nodes: int) -> list[tuple[int, int]]:
    """(node, GPU) pairs that a learner and an engine both use (a colocated task counts)."""
    per_node = len(roles) // num_nodes
    out = []
    for node in range(num_nodes):
        mine = roles[node * per_node:(node + 1) * per_node]
        learn = {g for r in mine if r.has_learner for g in r.gpus}
        engine = {g for r in mine if r.has_engine for g in r.gpus}
        out += [(node, g) for g in sorted(learn & engine)]
    return out
