"""Save before the allocation ends: the deadline comes from Slurm (the job's EndTime) or
the local executor's timeout, and the guard fires when one more step plus one save would
not fit before it."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import time


def slurm_end_time(job_id: str) -> float | None:
    """The job's EndTime as a Unix time. squeue prints local time without a zone: it is
    asked in UTC (TZ=UTC) and read as UTC, whatever this process's or the node's zone."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%e"], capture_output=True, text=True, timeout=20,
            env={**os.environ, "TZ": "UTC"},
        ).stdout.strip()
        if not out:
            return None
        end = dt.datetime.fromisoformat(out.splitlines()[0])
        return end.replace(tzinfo=dt.timezone.utc).timestamp()
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def job_deadline(start: float) -> float | None:
    """Wall-clock time at which this attempt will be killed, if known."""
    if os.environ.get("SLURM_JOB_ID"):
        return slurm_end_time(os.environ["SLURM_JOB_ID"])
    if os.environ.get("SUBMITIT_LOCAL_TIMEOUT_S"):
        return start + float(os.environ["SUBMITIT_LOCAL_TIMEOUT_S"])
    return None


class TimeLimitGuard:
    def __init__(self, deadline: float | None, margin_s: float = 10.0):
        self.deadline = deadline
        self.margin_s = margin_s
        self._last: float | None = None
        self._durations: list[float] = []

    def step_done(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if self._last is not None:
            self._durations.append(now - self._last)
        self._last = now

    def restart_clock(self) -> None:
        """Exclude the time just spent saving from the step-time estimate."""
        self._last = time.time()

    @property
    def mean_step_s(self) -> float:
        recent = self._durations[-20:]
        return sum(recent) / len(recent) if recent else 0.0

    def must_stop(self, save_s: float, now: float | None = None) -> bool:
        if self.deadline is None:
            return False
        now = time.time() if now is None else now
        return now + self.mean_step_s + save_s + self.margin_s >= self.deadline
