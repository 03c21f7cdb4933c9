"""The learners' side of a weight update: the full current weights, in Hugging Face names.

* bytes (CPU, or a learner sharing its GPU with an engine): the full state dict, gathered
  on learner 0 (ZeRO-3: consolidated from every learner), serialized with safetensors and
  sent to each rollout worker, whose engine loads it through its worker extension.
* nccl (GPU, engines on other GPUs): every learner walks the parameters bucket by bucket
  (ZeRO-3: gathering each bucket's parameters first, a collective among learners) and
  learner 0 broadcasts each flat bucket over a ProcessGroupNCCL it shares with every
  engine worker; the workers cut the buckets back into named tensors as they load.

With tied input/output embeddings the output head is sent too (`lm_head.weight`, a copy
of the embedding): vLLM keeps its own head on CPU, which would otherwise stay stale.
"""
from __future__ import annotations

import contextlib

from m2rl.weightsync.buckets import broadcast, bucket_plan, weight_group
from m2rl.models import embedding_keys
from m2rl.train.export import gather_state_dict, is_zero3, unwrap


def tied_head(module) -> tuple[str, str] | None:
    """(head name, embedding name) when the output head is tied to the input embedding."""
    config = getattr(module, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if not getattr(text, "tie_word_embeddings", False):
        return None
    emb, head = embedding_keys(module)
    return (head, emb) if head is not None else None


def complete_state_dict(module, sd: dict) -> dict:
    """Add the tied head, and give every entry its own storage (safetensors refuses
    shared tensors)."""
    sd = dict(sd)
    tie = tied_head(module)
    if tie is not None and tie[0] not in sd and tie[1] in sd:
        sd[tie[0]] = sd[tie[1]]
    seen: set[int] = set()
    out = {}
    for k, v in sd.items():
        v = v.detach()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone().contiguous() if ptr in seen else v.contiguous()
        seen.add(ptr)
    return out


def state_dict_bytes(model) -> bytes | None:
    """The full weights as safetensors bytes on learner 0, None on other learners. Collective."""
    from safetensors.torch import save

    sd = gather_state_dict(model)
    if sd is None:
        return None
    return save({k: v.cpu() for k, v in complete_state_dict(unwrap(model), sd).items()})


def param_meta(model) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype, full shape) of every parameter to send, in a fixed order (plus the
    tied head). ZeRO-3 partitions report their full shape in `ds_shape`."""
    module = unwrap(model)
    meta = [(n, str(p.dtype).removeprefix("torch."), tuple(getattr(p, "ds_shape", p.shape)))
            for n, p in module.named_parameters()]
    tie = tied_head(module)
    if tie is not None and tie[0] not in {m[0] for m in meta}:
        src = next(m for m in meta if m[0] == tie[1])
        meta.append((tie[0], src[1], src[2]))
    return meta


class BroadcastSender:
    """Learner 0's side of the weight broadcast (a standalone group: learner 0 plus every
    engine worker; NCCL on GPU); other learners only join the ZeRO-3 gathers."""

    def __init__(self, host: str, port: int, world_size: int, is_root: bool, backend: str = "nccl"):
        self.pg = None
        if is_root:
            self.store, self.pg = weight_group(host, port, 0, world_size, backend)

    def bucket_plan(self, model, bucket_mb: int = 512) -> list[list[tuple]]:
        return bucket_plan(param_meta(model), bucket_mb << 20)

    def send(self, model, plan: list[list[tuple]]) -> None:
        """Broadcast every bucket. Collective over learners under ZeRO-3."""
        import torch

        module = unwrap(model)
        params = dict(module.named_parameters())
        tie = tied_head(module)
        for bucket in plan:
            names = [tie[1] if tie and n == tie[0] else n for n, _, _ in bucket]
            tensors = [params[n] for n in names]
            gather = contextlib.nullcontext()
            if is_zero3(model):
                import deepspeed

                gather = deepspeed.zero.GatheredParameters(list({id(t): t for t in tensors}.values()),
                                                           modifier_rank=None)
            with gather, torch.no_grad():
                if self.pg is not None:
                    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
                    broadcast(self.pg, flat)
