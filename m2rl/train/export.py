"""Full weights out of a (possibly ZeRO-3 partitioned) engine, and the Hugging Face export.

`gather_state_dict` is collective (every rank calls it) and gives the whole state dict on
rank 0: under ZeRO-3 it gathers the partitions layer by layer. `export_hf` writes config,
consolidated safetensors weights, generation config and tokenizer to a directory
atomically (built beside it, then renamed), on rank 0 only, so that transformers'
`from_pretrained` and vLLM load it as is. Tied input/output embeddings are saved once
and re-tied on load.
"""
from __future__ import annotations

import logging
from pathlib import Path

from m2rl.train.distributed import rank

log = logging.getLogger("m2rl.train")


def unwrap(model):
    return getattr(model, "module", model)


def is_zero3(model) -> bool:
    check = getattr(model, "zero_optimization_partition_weights", None)
    return bool(check()) if callable(check) else False


def gather_state_dict(model, dtype=None) -> dict | None:
    """The full state dict (on the CPU) on rank 0, None on other ranks. Collective.

    `model` is a DeepSpeed engine or a plain module. Tied parameters share one tensor
    (both names are present, as in `module.state_dict()`).
    """
    if is_zero3(model):
        sd = model._zero3_consolidated_16bit_state_dict()
    elif rank() == 0:
        sd = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    else:
        sd = None
    if sd is not None and dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    return sd


def export_hf(model, out_dir: str | Path, tokenizer, dtype=None) -> Path | None:
    """Write `model` (engine or module) and `tokenizer` in Hugging Face format to
    `out_dir`, replacing it atomically. Collective; rank 0 writes (through
    m2rl.models.write_hf, which stores tied embeddings once). Returns the directory on
    rank 0, None elsewhere."""
    from m2rl import models

    sd = gather_state_dict(model, dtype)
    if rank() != 0:
        return None
    module = unwrap(model)
    if dtype is not None:
        module.config.dtype = dtype
    out = models.write_hf(module, tokenizer, out_dir, state_dict=sd)
    log.info("exported Hugging Face model to %s", out)
    return Path(out)
