"""m2rl's data: one sample schema for every domain, from bundled generators or the study's
RL blend, and the mixing for domain=multi. See `load_rl_dataset` and `load_sft_dataset`."""
from __future__ import annotations

from m2rl.data.config import DOMAINS, DataConfig

__all__ = ["DOMAINS", "DataConfig", "Sample", "load_rl_dataset", "load_sft_dataset", "to_sample"]


def __getattr__(name):  # the loaders import `datasets`: only when asked for
    if name in ("load_rl_dataset", "load_sft_dataset"):
        from m2rl.data import loader
        return getattr(loader, name)
    if name in ("Sample", "to_sample"):
        from m2rl.data import schema
        return getattr(schema, name)
    raise AttributeError(name)
