"""`stage=toy`, the stand-in job the spine's tests use: a tiny torch regression trained
for N steps with a seeded data order, so that "same final state" after a preemption
compares real weights. Writes `final_model.pt` in its run dir."""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

from m2rl.errors import ConfigError
from m2rl.stage import Layout, Stage


@dataclass
class ToyConfig:
    """The stand-in body: a tiny torch regression trained for `steps` seeded steps."""

    steps: int = 40
    batch_size: int = 16
    hidden: int = 32
    lr: float = 0.01
    n_samples: int = 512
    step_sleep_s: float = 0.0  # to make steps last, for preemption tests
    fail_at_step: int = -1  # raise at this step (crash tests)
    save_sleep_s: float = 0.0  # pause halfway through writing a checkpoint (kill tests)


def validate(cfg, layout: Layout) -> None:
    t = cfg.toy
    for key in ("steps", "batch_size", "hidden", "n_samples"):
        if t[key] < 1:
            raise ConfigError(f"toy.{key}", f"must be >= 1, got {t[key]}", f"set toy.{key} to a positive number")


def _data(seed: int, n: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    return x, torch.sin(x @ w) + 0.1 * torch.randn(n, 1, generator=g)


def _batch_indices(seed: int, step: int, n: int, batch: int):
    """The data order depends on (seed, step) only, so a resumed run sees the same batches."""
    import torch

    per_epoch = n // batch
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))
    return perm[pos * batch:(pos + 1) * batch]


def run(ctx) -> dict:
    import torch

    t, seed = ctx.cfg.toy, ctx.cfg.experiment.seed
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, t.hidden), torch.nn.Tanh(), torch.nn.Linear(t.hidden, 1))
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    x, y = _data(seed, t.n_samples)
    step = 0
    if (ck := ctx.resume()) is not None:
        state = torch.load(ck.path / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step = ck.step

    def save(d: Path) -> None:
        if not ctx.dist.is_writer:
            return
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buf)
        data = buf.getvalue()
        with open(d / "state.pt", "wb") as f:  # in two halves, so a kill can land mid-write
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(t.save_sleep_s)
            f.write(data[len(data) // 2:])

    loss = torch.tensor(float("nan"))
    while step < t.steps:
        if step == t.fail_at_step:
            raise RuntimeError(f"toy.fail_at_step={step}")
        idx = _batch_indices(seed, step, t.n_samples, t.batch_size)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if t.step_sleep_s:
            time.sleep(t.step_sleep_s)
        step += 1
        ctx.boundary(step, save)
    if ctx.dist.is_writer:
        torch.save(model.state_dict(), ctx.run_dir / "final_model.pt")
    return {"step": step, "loss": float(loss.detach())}


STAGE = Stage("toy", run, schema=ToyConfig, validate=validate, writes=("final_model.pt",))
