"""Which process am I: rank, world size and node, from Slurm, submitit or torchrun."""
from __future__ import annotations

import os
from dataclasses import dataclass


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if os.environ.get(name, "") != "":
            return int(os.environ[name])
    return default


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node: int = 0
    num_nodes: int = 1

    @classmethod
    def from_env(cls) -> "DistEnv":
        return cls(
            rank=_env_int("RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID", default=0),
            world_size=_env_int("WORLD_SIZE", "SLURM_NTASKS", "SUBMITIT_LOCAL_NTASKS", default=1),
            local_rank=_env_int("LOCAL_RANK", "SLURM_LOCALID", "SUBMITIT_LOCAL_LOCALID", default=0),
            node=_env_int("GROUP_RANK", "SLURM_NODEID", default=0),
            num_nodes=_env_int("SLURM_JOB_NUM_NODES", "SUBMITIT_LOCAL_JOB_NUM_NODES", default=1),
        )

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes shared files (pointers, records, exports)."""
        return self.rank == 0


def node_name() -> str:
    """The node this process runs on: Slurm's name for it (SLURMD_NODENAME, which also tells
    apart simulated nodes sharing one host), else the host name."""
    import socket

    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def _torch_dist():
    try:
        import torch.distributed as td
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return td if td.is_available() and td.is_initialized() else None


def barrier() -> None:
    td = _torch_dist()
    if td is not None:
        td.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is True on any rank (a no-op in one process)."""
    td = _torch_dist()
    if td is None:
        return flag
    import torch

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())
