"""Preemption notices only set a flag; the job saves at its next step boundary.

submitit installs a handler for its preempt signal (USR2, or $SUBMITIT_PREEMPT_SIGNAL)
that checkpoints and requeues at once, wherever the code is. We put ours in its place,
keep submitit's, and hand over to it once the job body has saved (`requeue()`), so the
requeue itself still goes through submitit (scontrol requeue under Slurm, a restart of
the task under the local executor). SIGTERM, which clusters without
`preempt_send_user_signal` send at the end of the grace time, is treated the same way.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from typing import Any

log = logging.getLogger(__name__)


def submitit_signal() -> signal.Signals:
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class PreemptionWatcher:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.received_at: float | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> "PreemptionWatcher":
        for sig in {submitit_signal(), signal.SIGUSR2, signal.SIGTERM}:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum, self.received_at = signum, time.time()
        log.warning("received %s: will save at the next step boundary", signal.Signals(signum).name)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def requeue(self) -> None:
        """Hand over to submitit's own handler, which requeues the job and exits.

        Returns only when there is nothing to hand over to (an inline run, or submitit's
        handler declined because this is not rank 0).
        """
        sig = submitit_signal()
        handler = self._previous.get(sig)
        self.uninstall()
        if callable(handler) and getattr(handler, "__self__", None).__class__.__name__ == "SignalHandler":
            try:
                handler(sig, None)
            except subprocess.CalledProcessError as err:
                # `scontrol requeue` refused: Slurm is requeueing or ending this job
                # already (preemption with REQUEUE, an external requeue). Exit without a
                # result so that submitit's driver keeps waiting for the next run.
                log.warning("requeue refused (%s): leaving it to Slurm", err)
                raise SystemExit(1) from None


@contextlib.contextmanager
def children_deaf_to_preemption():
    """Slurm sends the preemption notice (USR2, or TERM) to every process of the step; a
    child process (an inference engine, a verifier pool) would die of it mid-step.
    Children started in here inherit a signal mask that blocks the notices; this process
    gets any notice that arrived meanwhile as soon as the block ends (a blocked signal
    stays pending). Deaf children cannot be stopped by a notice, nor by anything of this
    process if it is SIGKILLed: a watcher kills them then (`reaper.watch`)."""
    from m2rl.runtime import reaper

    sigs = {signal.SIGUSR2, signal.SIGTERM, submitit_signal()}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        reaper.watch()
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
