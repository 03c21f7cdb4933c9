"""The stand-in job body: a tiny torch regression trained for N steps with a seeded data
order, so that "same final state" after a preemption compares real weights."""
from __future__ import annotations

import io
import time
from pathlib import Path

import torch

from m2rl.config import ConfigError
from m2rl.runtime import JobContext


def validate(cfg) -> None:
    t = cfg.toy
    for key in ("steps", "batch_size", "hidden", "n_samples"):
        if t[key] < 1:
            raise ConfigError(f"toy.{key}", f"must be >= 1, got {t[key]}", f"set toy.{key} to a positive number")


def _data(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    return x, torch.sin(x @ w) + 0.1 * torch.randn(n, 1, generator=g)


def _batch_indices(seed: int, step: int, n: int, batch: int) -> torch.Tensor:
    """The data order depends on (seed, step) only, so a resumed run sees the same batches."""
    per_epoch = n // batch
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))
    return perm[pos * batch:(pos + 1) * batch]


def run(ctx: JobContext) -> dict:
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
