"""Tell a user's `scancel` from a preemption: both reach the job as SIGTERM.

Measured on Slurm 22.05 (`scontrol show job -o`, read when the SIGTERM arrives):
- `scancel JOB`: JobState=COMPLETING (or CANCELLED), PreemptTime=None, Restarts unchanged;
- `scontrol requeue JOB`: JobState=COMPLETING too, but Restarts is one more than this run's
  SLURM_RESTART_COUNT;
- preemption (REQUEUE or CANCEL mode): PreemptTime is set;
- `scancel --signal=TERM JOB` (a signal only): JobState stays RUNNING;
- the time limit: Reason=TimeLimit.
A cancelled job is saved and stopped, never requeued: the user asked for it to end.
"""
from __future__ import annotations

import os
import subprocess


def job_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job -o JOB` as a dict ({} when scontrol cannot answer)."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def cancelled(fields: dict[str, str], restarts_at_start: int) -> bool:
    """True when the job is ending because someone cancelled it (see the module doc)."""
    if fields.get("JobState") not in ("COMPLETING", "CANCELLED"):
        return False
    if fields.get("PreemptTime", "None") not in ("None", "Unknown", ""):
        return False
    if fields.get("Reason") == "TimeLimit":
        return False
    try:
        return int(fields.get("Restarts", "0")) == restarts_at_start
    except ValueError:
        return False


def cancelled_by_user() -> bool:
    """This Slurm job is being cancelled (not preempted, requeued or timed out)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    return cancelled(job_fields(job), int(os.environ.get("SLURM_RESTART_COUNT") or 0))
