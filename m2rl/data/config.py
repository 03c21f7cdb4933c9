"""What data a job uses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

DOMAINS = ("math", "code", "science", "if")


@dataclass
class DataConfig:
    # "generated" (bundled offline generators), a hub id such as
    # "nvidia/Nemotron-3-Nano-RL-Training-Blend", or a local .jsonl/.parquet file or folder.
    source: str = "generated"
    # SFT data: "generated", or a local .jsonl/.parquet with `messages` (+ `response`).
    sft_source: str = "generated"
    n_train: Optional[int] = 1000  # None: every loaded row not held out for eval
    n_eval: int = 100
    seed: int = 0
    # domain=multi: proportions per domain, e.g. {math: 0.4, code: 0.2, ...}; None = natural
    mix: Optional[dict[str, float]] = None
    domains: list[str] = field(default_factory=lambda: list(DOMAINS))  # what multi mixes
