"""The engine's side of a weight update: what runs inside a running vLLM engine.

vLLM mixes `WeightSyncExtension` into each of its workers (`LLM(worker_extension_cls=
EXTENSION)`); `EngineWeights` calls its methods on every worker of the engine with
`llm.collective_rpc`. Both paths end in the worker's `reload_weights(weights_iterator=...)`,
which takes checkpoint-format (Hugging Face) names and shards, fuses and repacks them as
the model needs (calling `model.load_weights` directly breaks on the CPU backend, which
repacks its linear weights).

* bytes: a safetensors blob (tensors themselves do not pickle through collective_rpc).
* files: an HF dir's safetensors shards, read by each worker itself (the eval job's next
  model of the same architecture).
* NCCL: a torch ProcessGroupNCCL of learner 0 (rank 0) and every engine worker, built
  from a TCPStore that learner 0 hosts; the learner broadcasts flat buckets of one dtype,
  which are cut into the named tensors as they stream into reload_weights.

Kept importable without vLLM.
"""
from __future__ import annotations

from m2rl.weightsync.buckets import receive_buckets, weight_group

EXTENSION = "m2rl.weightsync.extension.WeightSyncExtension"


class EngineWeights:
    """The weight-update ops of one engine (`m2rl.weightsync.OPS`), as messages or calls."""

    def __init__(self, llm):
        self.llm = llm

    def load_bytes(self, blob: bytes) -> None:
        self.llm.collective_rpc("m2rl_load_bytes", args=(blob,))
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights

    def load_files(self, paths: list[str]) -> None:
        """Another checkpoint of the same architecture, read by each engine worker from its
        safetensors files (an HF dir's shards): no engine restart, nothing through pickles."""
        self.llm.collective_rpc("m2rl_load_files", args=([str(p) for p in paths],))
        self.llm.reset_prefix_cache()

    def nccl_init(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        self.llm.collective_rpc("m2rl_nccl_init", args=(host, port, rank_offset, world_size))

    def nccl_recv(self, plan) -> None:
        self.llm.collective_rpc("m2rl_nccl_recv", args=(plan,))
        self.llm.reset_prefix_cache()

    def handle(self, msg: dict) -> dict:
        """One message of the driver's (`WeightSync`), and its reply."""
        op = msg["op"]
        if op == "load_bytes":
            self.load_bytes(msg["blob"])
            out = {"op": "loaded", "version": msg["version"]}
        elif op == "nccl_init":
            self.nccl_init(msg["host"], msg["port"], msg["rank_offset"], msg["world_size"])
            out = {"op": "nccl_ready"}
        elif op == "nccl_recv":
            self.nccl_recv(msg["plan"])
            out = {"op": "loaded", "version": msg["version"]}
        else:
            raise ValueError(f"unknown weight op {op!r}")
        return out


class WeightSyncExtension:
    """Methods added to every vLLM worker (`self` is the worker)."""

    def m2rl_load_bytes(self, blob: bytes) -> int:
        from safetensors.torch import load

        weights = load(blob)
        self.reload_weights(weights_iterator=iter(weights.items()))
        return len(weights)

    def m2rl_load_files(self, paths: list[str]) -> int:
        from safetensors import safe_open

        count = 0

        def tensors():
            nonlocal count
            for path in paths:
                with safe_open(path, framework="pt") as f:
                    for name in f.keys():
                        count += 1
                        yield name, f.get_tensor(name)

        self.reload_weights(weights_iterator=tensors())
        return count

    def m2rl_nccl_init(self, host: str, port: int, rank_offset: int, world_size: int) -> int:
        rank = rank_offset + int(getattr(self, "rank", 0))
        self._m2rl_store, self._m2rl_pg = weight_group(host, port, rank, world_size)
        return rank

    def m2rl_nccl_recv(self, plan: list[list[tuple]]) -> int:
        count = sum(len(b) for b in plan)
        self.reload_weights(weights_iterator=receive_buckets(self._m2rl_pg, plan, self.device))
        return count
