"""Engine checkpoints through the job runtime: `ctx.save(step, save_fn)` calls the
writer on every rank inside a staging dir, so DeepSpeed's collective
`save_checkpoint` fits as is.

Layout inside one runtime checkpoint dir:
    engine/          DeepSpeed's files: module weights, each rank's optimizer shard, the
                     lr scheduler, and our client state (step, data position, ...)
    rng/rank_N.pt    each rank's RNG states (python, numpy, torch, cuda)
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from m2rl.train.distributed import rank

TAG = "engine"


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_engine(ds_engine, path: str | Path, client_state: dict[str, Any] | None = None) -> None:
    """Write the engine's full training state under `path`. Call on every rank."""
    import torch

    path = Path(path)
    ds_engine.save_checkpoint(str(path), tag=TAG, client_state=dict(client_state or {}), save_latest=False)
    (path / "rng").mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), path / "rng" / f"rank_{rank()}.pt")


def load_engine(ds_engine, path: str | Path, restore_rng: bool = True) -> dict:
    """Restore what save_engine wrote; returns the client state. Call on every rank."""
    import torch

    path = Path(path)
    load_path, client = ds_engine.load_checkpoint(str(path), tag=TAG, load_optimizer_states=True,
                                                  load_lr_scheduler_states=True)
    if load_path is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint under {path / TAG}")
    rng = path / "rng" / f"rank_{rank()}.pt"
    if restore_rng:
        if not rng.is_file():
            raise FileNotFoundError(f"{rng} is missing (was the checkpoint written by another world size?)")
        set_rng_state(torch.load(rng, weights_only=False))
    return dict(client or {})
