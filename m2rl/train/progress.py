"""Training telemetry on rank 0: TensorBoard scalars, a progress bar on a terminal, and
plain log lines elsewhere (Slurm output files)."""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

log = logging.getLogger("m2rl.train")


class TrainLogger:
    """`log(step, {name: value})` writes TensorBoard scalars under `tb_dir` and shows
    progress. Silent on ranks other than 0. `interactive=None` means "if stderr is a
    terminal" (a bar), else a log line every `log_every` steps. `initial_step` is the
    step a resumed run restarts from."""

    def __init__(self, tb_dir: str | Path | None, total_steps: int, enabled: bool = True, prefix: str = "train",
                 log_every: int = 1, interactive: bool | None = None, initial_step: int = 0):
        self.enabled, self.prefix, self.total = enabled, prefix, total_steps
        self.log_every = max(1, log_every)
        self.writer = None
        self.bar = None
        if not enabled:
            return
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            Path(tb_dir).mkdir(parents=True, exist_ok=True)
            # a resumed run drops what an earlier attempt logged past its checkpoint
            self.writer = SummaryWriter(str(tb_dir), purge_step=initial_step + 1 if initial_step else None)
        if interactive if interactive is not None else sys.stderr.isatty():
            from tqdm import tqdm

            size = shutil.get_terminal_size(fallback=(100, 24))  # a pty of size 0x0 would hide the bar
            self.bar = tqdm(total=total_steps, initial=initial_step, desc=prefix, ncols=size.columns,
                            nrows=size.lines)

    def log(self, step: int, scalars: dict[str, float | None], section: str | None = None) -> None:
        if not self.enabled:
            return
        section = section or self.prefix
        values = {k: float(v) for k, v in scalars.items() if v is not None}
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{section}/{k}", v, step)
        if self.bar is not None:
            if section == self.prefix:
                self.bar.n = step
                self.bar.set_postfix({k: _short(v) for k, v in values.items()}, refresh=True)
            else:
                self.bar.write(f"step {step} {section}: " + " ".join(f"{k}={_short(v)}" for k, v in values.items()))
        elif section != self.prefix or step % self.log_every == 0 or step == self.total:
            log.info("step %d/%d %s: %s", step, self.total, section,
                     " ".join(f"{k}={_short(v)}" for k, v in values.items()))

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _short(v: float) -> str:
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
