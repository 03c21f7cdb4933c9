"""The protocol every job kind follows, and the one entry that runs a job body.

A body is `run(ctx: JobContext) -> dict`. It resumes from `ctx.resume()` and calls
`ctx.boundary(step, save)` after every step; the runtime decides when to save (every
`run.save_every` steps, on a preemption notice, before the time limit) and stops the
body by raising `Interrupted` right after such a save. Whatever started the attempt (a
first launch, a Slurm or submitit requeue, a manual relaunch) it resumes from the
latest checkpoint, and every attempt leaves a record for the GPU-hour ledger.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from . import rundir
from .attempts import AttemptRecorder
from .cancel import cancelled_by_user
from .checkpoint import Checkpoint, CheckpointManager
from .dist import DistEnv, any_rank
from .preemption import PreemptionWatcher
from .timelimit import TimeLimitGuard, job_deadline

log = logging.getLogger("m2rl")
Body = Callable[["JobContext"], dict]


class Interrupted(Exception):
    def __init__(self, state: str, step: int):
        self.state, self.step = state, step
        super().__init__(f"{state} at step {step}")


@dataclass
class JobContext:
    cfg: DictConfig
    run_dir: Path
    dist: DistEnv
    checkpoints: CheckpointManager
    attempts: AttemptRecorder
    preemption: PreemptionWatcher
    guard: TimeLimitGuard
    save_every: int
    _save_estimate_s: float = field(default=5.0)
    _cancel: bool | None = None

    @property
    def tb_dir(self) -> Path:
        return self.run_dir / "tb"

    def resume(self) -> Checkpoint | None:
        ck = self.checkpoints.latest()
        rec = self.attempts.record
        if rec is not None:
            rec.step_start = rec.step_end = ck.step if ck else 0
            if ck is not None:
                rec.last_checkpoint_step, rec.last_checkpoint_time = ck.step, time.time()
            self.attempts.write()
        if ck is not None:
            log.info("resuming from %s (step %d)", ck.path, ck.step)
        return ck

    def save(self, step: int, write: Callable[[Path], None], meta: dict | None = None) -> Checkpoint:
        ck = self.checkpoints.save(step, write, meta)
        self._save_estimate_s = max(self._save_estimate_s * 0.5, self.checkpoints.last_save_seconds or 0.0)
        self.attempts.checkpointed(step)
        self.guard.restart_clock()
        return ck

    def stop_requested(self) -> bool:
        """A notice or a stop request is pending (cheap: polled while waiting mid-step)."""
        return self.preemption.requested or rundir.stop_requested(self.run_dir)

    def _stop_state(self) -> str | None:
        """Why this job must stop now, the same on every rank (collective), or None."""
        if not any_rank(self.stop_requested()):  # the common case: one collective per boundary
            return None
        if any_rank(rundir.stop_requested(self.run_dir)):
            return "interrupted"
        return "cancelled" if any_rank(self._cancelled()) else "preempted"

    def _cancelled(self) -> bool:
        """A SIGTERM that is a user's scancel, not a preemption (asked once per notice)."""
        if self._cancel is None:
            self._cancel = self.preemption.signum == signal.SIGTERM and cancelled_by_user()
        return self._cancel

    def stop_now(self, step: int, save: Callable[[Path], None], meta: dict | None = None) -> None:
        """A notice came in the middle of step `step + 1`: the state is still that of `step`,
        the last completed one. Save it now (unless it is saved already) and stop, so the
        requeue comes well within the grace time; the resumed attempt redoes the step.
        Collective: every rank calls it."""
        stop = self._stop_state() or "preempted"
        latest = self.checkpoints.latest()
        if latest is None or latest.step != step:
            self.save(step, save, meta)
        log.warning("%s in the middle of step %d: saved the state of step %d", stop, step + 1, step)
        raise Interrupted(stop, step)

    def boundary(self, step: int, save: Callable[[Path], None], meta: dict | None = None) -> None:
        """Call after `step` steps are done. Saves when due; raises Interrupted after a
        save forced by a preemption notice or the time limit."""
        now = time.time()
        self.guard.step_done(now)
        rec = self.attempts.record
        if rec is not None:
            rec.step_end = step
            if rec.first_step_time is None:
                rec.first_step_time = now
                self.attempts.write()
        stop = self._stop_state()
        if stop is None and any_rank(self.guard.must_stop(self._save_estimate_s, now)):
            stop = "timeout"
        if stop or step % self.save_every == 0:
            self.save(step, save, meta)
        if stop:
            raise Interrupted(stop, step)


def _executor() -> str:
    if os.environ.get("SLURM_JOB_ID"):
        return "slurm"
    return "local" if os.environ.get("SUBMITIT_LOCAL_JOB_ID") else "inline"


def _submitit_job_id() -> str | None:
    try:
        import submitit

        return submitit.JobEnvironment().job_id
    except Exception:  # not inside a submitit job
        return None


def run_job(cfg: DictConfig, body: Body, mutable: tuple[str, ...] = ()) -> dict:
    """Run `body(ctx)` as one attempt of the run `cfg` names (`mutable`: config keys that
    may differ from the run's saved config)."""
    dist = DistEnv.from_env()
    state = rundir.inspect(cfg, mutable)
    if state.done:
        log.info("run %s is finished already: nothing to do", state.path)
        return rundir.read_done(state.path) or {}
    if dist.is_writer:
        rundir.save_config(cfg, state.path)
    executor = _executor()
    recorder = AttemptRecorder(state.path, enabled=dist.is_writer)
    recorder.start(rundir.identity(cfg), executor, cfg.cluster.gpus_per_node,
                   job_id=_submitit_job_id(), world_size=dist.world_size,
                   nodes=cfg.cluster.nodes, cpus=cfg.cluster.cpus_per_task * cfg.cluster.tasks_per_node)
    start = recorder.record.start_time
    preemption = PreemptionWatcher().install()
    ctx = JobContext(
        cfg=cfg, run_dir=state.path, dist=dist,
        checkpoints=CheckpointManager(state.path / "checkpoints", cfg.run.keep_last, dist),
        attempts=recorder, preemption=preemption,
        guard=TimeLimitGuard(job_deadline(start), cfg.run.time_margin_s),
        save_every=cfg.run.save_every,
    )
    log.info("%s attempt %d of %s (%s, rank %d/%d)", cfg.stage.name, recorder.record.attempt,
             state.path, executor, dist.rank, dist.world_size)
    if ctx.guard.deadline is not None:
        log.info("time limit: the allocation ends in %.0f s; saving before then", ctx.guard.deadline - time.time())
    try:
        result = body(ctx)
    except Interrupted as stop:
        rec = recorder.record
        rec.mean_step_s = ctx.guard.mean_step_s
        if preemption.signum is not None:
            rec.signal, rec.signal_time = signal.Signals(preemption.signum).name, preemption.received_at
        if stop.state in ("cancelled", "interrupted"):
            why = "cancelled (scancel)" if stop.state == "cancelled" else "interrupted (stop request, Ctrl-C)"
            recorder.finish(stop.state, f"{why}: saved at step {stop.step}, not requeued", stop.step)
            log.warning("%s: checkpoint saved at step %d; not requeued (relaunch to resume)", why, stop.step)
            if dist.is_writer:
                rundir.clear_stop(state.path)
            return {"interrupted": stop.state, "step": stop.step}
        recorder.finish(stop.state, f"saved at step {stop.step} and stopped", stop.step)
        log.warning("%s: checkpoint saved at step %d; requeueing", stop.state, stop.step)
        preemption.requeue()  # under submitit this requeues and exits
        return {"interrupted": stop.state, "step": stop.step}
    except BaseException as err:
        recorder.finish("failed", f"{type(err).__name__}: {err}", recorder.record.step_end)
        raise
    finally:
        preemption.uninstall()
    recorder.record.mean_step_s = ctx.guard.mean_step_s
    step = int(result.get("step", recorder.record.step_end))
    recorder.finish("completed", "finished", step)
    if dist.is_writer:
        rundir.mark_done(state.path, {**result, "finished_at": time.time()})
    return result
