"""Learning-rate schedules: linear warmup, then cosine (or linear) decay to a floor."""
from __future__ import annotations

import math

from m2rl.train.config import OptimConfig


def warmup_steps(cfg: OptimConfig, total_steps: int) -> int:
    if cfg.warmup_steps >= 0:
        return min(cfg.warmup_steps, total_steps)
    return min(total_steps, int(round(cfg.warmup_ratio * total_steps)))


def lr_factor(step: int, total_steps: int, warmup: int, schedule: str = "cosine", min_ratio: float = 0.0) -> float:
    """The multiplier of the base lr for optimizer step `step` (0-based): it reaches the
    peak at the last warmup step and the floor (`min_ratio`) at the last step."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    decay = max(1, total_steps - warmup)
    progress = min(1.0, max(0.0, (step + 1 - warmup) / decay))
    if schedule == "linear":
        shape = 1.0 - progress
    elif schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return min_ratio + (1.0 - min_ratio) * shape


class LRLambda:
    """A picklable lr lambda for torch's LambdaLR (its state travels in checkpoints)."""

    def __init__(self, cfg: OptimConfig, total_steps: int):
        self.total_steps = total_steps
        self.warmup = warmup_steps(cfg, total_steps)
        self.schedule = cfg.schedule
        self.min_ratio = cfg.min_lr_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup, self.schedule, self.min_ratio)


def scheduler(optimizer, cfg: OptimConfig, total_steps: int):
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRLambda(cfg, total_steps))
