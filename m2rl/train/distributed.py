"""torch.distributed from a Slurm allocation, a submitit job, torchrun, or nothing.

One process per GPU (per task on CPU). The rendezvous comes from the job environment:
inside a submitit job (Slurm or its local executor) submitit's
`TorchDistributedEnvironment` exports RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT (the
master is the first host of the allocation, the port derives from the job id, so a
requeued job agrees on it again); under torchrun they are set already; a lone process
uses a free loopback port. On GPU the group is NCCL for CUDA tensors and gloo for CPU
tensors (the runtime's preemption vote is a CPU all-reduce); gloo alone on CPU. DeepSpeed
then adopts the process group (it would otherwise try MPI discovery, and compile a
shared-memory comm op on CPU).
"""
from __future__ import annotations

import datetime
import logging
import os
import socket
import warnings

from m2rl.runtime.dist import DistEnv

log = logging.getLogger("m2rl.train")
RENDEZVOUS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendezvous(given: dict[str, str] | None = None) -> tuple[str, str]:
    """(init_method, where it came from). A `given` rendezvous (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT: a group of some of the job's tasks) is exported and wins.
    Inside a submitit job (Slurm or the local
    executor) submitit's view of the job wins over values inherited from the launching
    process; it exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. A lone
    process gets a free loopback port and leaves the environment alone (its children,
    e.g. inference engines, must not inherit a rendezvous)."""
    if given:
        os.environ.update(given)
        return "env://", "given"
    if os.environ.get("SUBMITIT_EXECUTOR"):
        from submitit.helpers import TorchDistributedEnvironment

        # CUDA_VISIBLE_DEVICES is left alone: the device is picked by local rank instead
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        if DistEnv.from_env().num_nodes == 1 and os.environ["MASTER_ADDR"] in ("localhost", socket.gethostname()):
            os.environ["MASTER_ADDR"] = "127.0.0.1"  # one node: stay on loopback
        return "env://", "submitit"
    if all(os.environ.get(k) for k in RENDEZVOUS):
        return "env://", "environment"
    env = DistEnv.from_env()
    if env.world_size > 1:
        raise RuntimeError(f"{env.world_size} processes but no rendezvous: set MASTER_ADDR and MASTER_PORT, "
                           "or launch through submitit/Slurm/torchrun")
    return f"tcp://127.0.0.1:{_free_port()}", "single process"


def device() -> "torch.device":  # noqa: F821
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(timeout_s: int = 1800, group: dict[str, str] | None = None) -> DistEnv:
    """Idempotent: init the default process group and DeepSpeed's comm layer.

    Every process of the group must call it: the whole job, or the tasks that `group` (a
    rendezvous, see `rendezvous`) names. Returns the process's place in the group.
    """
    import torch
    import torch.distributed as td

    # DeepSpeed calls collectives that torch deprecates, once per step: keep the logs readable
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    if not td.is_initialized():
        init_method, source = rendezvous(group)
        dev = device()
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # On GPU both: NCCL for CUDA tensors, gloo for the CPU ones (the runtime's any_rank/barrier)
        backend = "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"
        env = DistEnv.from_env()
        os.environ.setdefault("LOCAL_RANK", str(env.local_rank))  # DeepSpeed insists on it
        log.info("process group: %s, rank %d/%d, %s (%s)", backend, env.rank, env.world_size, init_method
                 if init_method != "env://" else f"master {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                 source)
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        td.init_process_group(backend, init_method=init_method, rank=env.rank, world_size=env.world_size,
                              timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    _init_deepspeed_comm(timeout_s)
    return DistEnv.from_env()


def _init_deepspeed_comm(timeout_s: int) -> None:
    import deepspeed
    import deepspeed.comm as dscomm

    if dscomm.is_initialized():
        return
    # DeepSpeed compiles a shared-memory allreduce op at comm init on CPU (~80 s); gloo does
    # without it. There is no public switch: mark the op incompatible.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(auto_mpi_discovery=False, verbose=False,
                               timeout=datetime.timedelta(seconds=timeout_s))


def destroy() -> None:
    import torch.distributed as td

    if td.is_initialized():
        td.barrier()
        td.destroy_process_group()
    try:
        import deepspeed.comm.comm as dscomm
        from deepspeed.utils import groups
    except ImportError:  # pragma: no cover
        return
    # A later init_distributed() in this process must start DeepSpeed afresh: its comm layer and
    # the process groups it cached (cloned from the world group just destroyed) are stale.
    dscomm.cdb = None
    for name, value in vars(groups).items():
        if name.startswith("_") and name.endswith("_GROUP") or name.endswith("_GROUP_RANKS"):
            setattr(groups, name, {} if isinstance(value, dict) else None)
    groups.mpu = None


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    import torch.distributed as td

    return td.get_rank() if td.is_initialized() else 0


def all_reduce(values: list[float], op: str = "sum") -> list[float]:
    """Sum (op="sum") or maximize (op="max") a few numbers over every process (a no-op in
    one process)."""
    import torch
    import torch.distributed as td

    if not td.is_initialized() or td.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)  # a CPU tensor: gloo (see init_distributed)
    td.all_reduce(t, op={"sum": td.ReduceOp.SUM, "max": td.ReduceOp.MAX}[op])
    return t.tolist()
