"""The vLLM worker extension: weight updates inside a running engine.

vLLM mixes this class into each of its workers (`LLM(worker_extension_cls=...)`); the
rollout task calls the methods on every worker of its engine with `llm.collective_rpc`.
Both paths end in the worker's `reload_weights(weights_iterator=...)`, which takes
checkpoint-format (Hugging Face) names and shards, fuses and repacks them as the model
needs (calling `model.load_weights` directly breaks on the CPU backend, which repacks its
linear weights).

* bytes: a safetensors blob (tensors themselves do not pickle through collective_rpc).
* NCCL: a torch ProcessGroupNCCL of learner 0 (rank 0) and every engine worker, built
  from a TCPStore that learner 0 hosts; the learner broadcasts flat buckets of one dtype,
  which are cut into the named tensors as they stream into reload_weights.

Kept importable without vLLM (the learner imports `bucket_plan` from here).
"""
from __future__ import annotations

import datetime

_DTYPES = ("float32", "bfloat16", "float16")


def bucket_plan(meta: list[tuple[str, str, tuple[int, ...]]], bucket_bytes: int) -> list[list[tuple]]:
    """Group (name, dtype, shape) entries, in order, into buckets of one dtype and at most
    `bucket_bytes` (a larger tensor gets a bucket of its own). Both ends cut the same way."""
    import math

    sizes = {"float32": 4, "bfloat16": 2, "float16": 2}
    buckets: list[list[tuple]] = []
    cur: list[tuple] = []
    cur_bytes = 0
    for name, dtype, shape in meta:
        nbytes = math.prod(shape) * sizes[dtype]
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
    import math

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


class WeightSyncExtension:
    """Methods added to every vLLM worker (`self` is the worker)."""

    def m2rl_load_bytes(self, blob: bytes) -> int:
        from safetensors.torch import load

        weights = load(blob)
        self.reload_weights(weights_iterator=iter(weights.items()))
        return len(weights)

    def m2rl_nccl_init(self, host: str, port: int, rank_offset: int, world_size: int) -> int:
        rank = rank_offset + int(getattr(self, "rank", 0))
        self._m2rl_store, self._m2rl_pg = weight_group(host, port, rank, world_size)
        return rank

    def m2rl_nccl_recv(self, plan: list[list[tuple]]) -> int:
        count = sum(len(b) for b in plan)
        self.reload_weights(weights_iterator=receive_buckets(self._m2rl_pg, plan, self.device))
        return count
