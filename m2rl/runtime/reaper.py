"""Children that must not outlive their process.

A vLLM engine core or a verifier pool is a child process deaf to the preemption notices
(`preemption.children_deaf_to_preemption`). When the process that started it is
SIGKILLed (a kill -9, the OOM killer, a failed task), none of its code runs to shut them
down: they are re-parented to init and keep their memory (GPU memory on a cluster) until
someone notices. Slurm's proctrack/linuxproc loses re-parented processes, and the local
executor never looked. `watch()` starts one small watcher process per process: it polls
its parent, remembers the parent's descendants, and SIGKILLs them once the parent is gone.

    python -m m2rl.runtime.reaper <pid> <interval_s>     (what `watch()` runs)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

_watched: int | None = None  # the pid a watcher was started for (a fork must start its own)


def watch(interval_s: float = 1.0) -> None:
    """Start this process's watcher, once."""
    global _watched
    if _watched == os.getpid():
        return
    subprocess.Popen([sys.executable, "-m", "m2rl.runtime.reaper", str(os.getpid()), str(interval_s)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
    _watched = os.getpid()


def _gone(proc) -> bool:
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def main(pid: int, interval_s: float) -> None:
    import psutil

    for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):  # notices are the job's, not ours
        signal.signal(sig, signal.SIG_IGN)
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    seen: list = []
    while not _gone(parent):
        try:
            seen = [p for p in parent.children(recursive=True) if p.pid != os.getpid()]
        except psutil.Error:
            pass
        time.sleep(interval_s)
    for p in seen:
        try:
            p.kill()  # psutil checks the pid still names the same process (its start time)
        except psutil.Error:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
