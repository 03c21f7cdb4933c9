"""The wire format of the NCCL weight broadcast, shared by both ends: the bucket plan
(which named tensors travel together), the standalone process group, and the receiving
side's cut of each flat bucket back into named tensors. Kept importable without vLLM."""
from __future__ import annotations

import datetime
import math

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def bucket_plan(meta: list[tuple[str, str, tuple[int, ...]]], bucket_bytes: int) -> list[list[tuple]]:
    """Group (name, dtype, shape) entries, in order, into buckets of one dtype and at most
    `bucket_bytes` (a larger tensor gets a bucket of its own). Both ends cut the same way."""
    buckets: list[list[tuple]] = []
    cur: list[tuple] = []
    cur_bytes = 0
    for name, dtype, shape in meta:
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        if cur and (cur[0][1] != dtype or cur_bytes + nbytes > bucket_bytes):
            buckets.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, dtype, tuple(shape)))
        cur_bytes += nbytes
    if cur:
        buckets.append(cur)
    return buckets


def weight_group(host: str, port: int, rank: int, world_size: int, backend: str = "nccl", timeout_s: int = 1800):
    """A standalone process group (outside any default group) for the weight broadcast:
    learner 0 is rank 0 and hosts the store. NCCL on GPU; gloo serves the CPU tests."""
    import torch.distributed as td

    timeout = datetime.timedelta(seconds=timeout_s)
    store = td.TCPStore(host, port, world_size=None, is_master=(rank == 0), timeout=timeout, wait_for_workers=False)
    store = td.PrefixStore("m2rl-weights", store)
    if backend == "gloo":
        return store, td.ProcessGroupGloo(store, rank, world_size, timeout)
    opts = td.ProcessGroupNCCL.Options()
    opts._timeout = timeout
    return store, td.ProcessGroupNCCL(store, rank, world_size, opts)


def broadcast(pg, tensor) -> None:
    import torch.distributed as td

    opts = td.BroadcastOptions()
    opts.rootRank = 0
    pg.broadcast([tensor], opts).wait()


def receive_buckets(pg, plan: list[list[tuple]], device):
    """Yield (name, tensor) as each broadcast bucket arrives (the sender's order)."""
    import torch

    for bucket in plan:
        dtype = getattr(torch, bucket[0][1])
        buf = torch.empty(sum(math.prod(s) for _, _, s in bucket), dtype=dtype, device=device)
        broadcast(pg, buf)
        off = 0
        for name, _, shape in bucket:
            n = math.prod(shape)
            yield name, buf[off:off + n].view(shape)
            off += n
