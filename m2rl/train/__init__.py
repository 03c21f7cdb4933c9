"""Training plumbing shared by the SFT, GRPO and OPD job bodies.

    init_distributed()            process group from Slurm/submitit/torchrun (NCCL/gloo)
    build_engine(model, ...)      DeepSpeed engine: ZeRO stage, precision, torch AdamW,
                                  warmup+cosine schedule, accumulation, clipping
    save_engine / load_engine     the engine's state (+ client state, per-rank RNG) in a
                                  runtime checkpoint dir (`ctx.save(step, fn)`)
    gather_state_dict / export_hf full weights out of ZeRO-3; HF export (rank 0, atomic)
    TrainLogger                   TensorBoard scalars, progress bar / log lines
    batches, loss                 chat tokenization with assistant-only labels, packing,
                                  a resumable rank-sharded step sampler; token losses

Importing this package is cheap (stages import its config); the names above load
their modules (torch, DeepSpeed) on first use.
"""
from __future__ import annotations

import importlib

from m2rl.train.config import EngineConfig, OptimConfig, SFTConfig

_LAZY = {
    "init_distributed": "distributed", "all_reduce": "distributed", "device": "distributed",
    "destroy": "distributed",
    "build_engine": "engine", "EngineInfo": "engine", "current_lr": "engine", "grad_norm": "engine",
    "save_engine": "checkpoint", "load_engine": "checkpoint",
    "gather_state_dict": "export", "export_hf": "export",
    "TrainLogger": "progress",
    "StepSampler": "batches", "tokenize_chat": "batches", "prompt_ids": "batches", "pack": "batches",
    "collate": "batches", "nll_sum": "loss", "forward_logits": "loss",
}

__all__ = ["EngineConfig", "OptimConfig", "SFTConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"m2rl.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'm2rl.train' has no attribute {name!r}")
