"""Typed config sections of the training plumbing, shared by SFT, GRPO and OPD.

Kept free of heavy imports: the launcher imports it (through the sft stage) to build the schema.
`EngineConfig` and `OptimConfig` are the reusable parts; `SFTConfig` is the `sft:`
section of a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")
OPTIMIZERS = ("torch", "deepspeed")


@dataclass
class EngineConfig:
    """How DeepSpeed holds the model: ZeRO stage, precision, batch shape."""

    zero_stage: int = 2  # 0 (plain DDP), 1, 2 or 3
    precision: str = "auto"  # auto = bf16 on GPU, fp32 on CPU
    micro_batch_size: int = 8  # sequences per process per forward
    # RL learners (GRPO): micro-batches by this token budget (rows x longest row, rows sorted
    # by length) instead of micro_batch_size rows; 0 = off. At least the longest possible row.
    max_tokens_per_micro_batch: int = 0
    grad_accum: int = 1  # micro-batches per optimizer step
    # torch: torch.optim.AdamW (no JIT compile); deepspeed: DeepSpeed's FusedAdam/CPUAdam (compiles on first use)
    optimizer: str = "torch"
    offload_optimizer: bool = False  # ZeRO optimizer state on CPU (stages 1-3)
    gradient_checkpointing: bool = False
    dist_timeout_s: int = 1800  # collective timeout of the process group


@dataclass
class OptimConfig:
    """AdamW with a warmup then cosine (or linear, or constant) learning rate."""

    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # the schedule's floor, as a fraction of lr
    schedule: str = "cosine"
    warmup_steps: int = -1  # -1: warmup_ratio of the total steps
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping


@dataclass
class SFTConfig:
    """Supervised fine-tuning on chat data (loss on assistant tokens only). What data
    (source, sizes of the train and held-out splits) is the `data` section's."""

    epochs: float = 1.0  # passes over the training set (fractions allowed)
    steps: int = 0  # optimizer steps; 0 = derived from epochs
    max_seq_len: int = 512  # longer samples are truncated
    packing: bool = False  # pack several samples per row (no cross-sample attention)
    eval_every: int = 0  # steps between held-out evals; 0 = only at the start and the end
    log_every: int = 1  # steps between logged scalars
    export: bool = True  # write the final model to <run_dir>/export/ (Hugging Face format)
    init_from: Optional[str] = None  # a run of the experiment (grpo/math), an HF dir or hub id; None = the model config's
    engine: EngineConfig = field(default_factory=EngineConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
