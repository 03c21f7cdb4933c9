"""Join job-side attempt records with Slurm's `sacct -D` rows into one ledger.

One ledger entry per Slurm run of a job (a `-D` row) and per attempt that no row covers.
- GPU-seconds: Slurm's (ElapsedRaw x gres/gpu) wherever a row exists, including rows no
  attempt record matches (a job that died before Python started): Slurm is the authority.
  Attempts no row covers (local executor, or accounting missing) count from the job
  side: configured GPUs x (end, or last heartbeat, - start).
- An experiment in which no job had a GPU (the embedded default on a CPU machine) counts
  CPUs where GPUs would be counted: `Ledger.unit` is then "CPU", and every `gpu*` figure
  below is in CPU-seconds (the report says so).
- Steps and lost work come from the attempt records; an attempt killed hard (no end
  record) gets its lost work from Slurm's End (or its last heartbeat) back to its last
  checkpoint.
- Matching: a row and an attempt match when the attempt's SLURM_JOB_ID is the row's
  JobIDRaw (or its submitit id the row's JobID) and the attempt started inside the row's
  [Start, End]; SLURM_RESTART_COUNT is checked against the row's position among the
  rows of its job. Every disagreement becomes a note on the entry, shown in the report.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable

from .records import RunInfo, Scan
from .sacct import SacctRow

SLURM_STATES = {
    "COMPLETED": "completed", "PREEMPTED": "preempted", "REQUEUED": "requeued", "TIMEOUT": "timeout",
    "DEADLINE": "timeout", "FAILED": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed", "CANCELLED": "cancelled", "RUNNING": "running", "COMPLETING": "running",
    "SUSPENDED": "running", "PENDING": "pending", "REQUEUE_HOLD": "pending", "REQUEUE_FED": "pending",
}
JOB_STATES = {"interrupted": "cancelled"}
INTERRUPTED = ("preempted", "requeued", "timeout", "failed", "cancelled", "killed")
# Slurm states that agree with what the job says about its own end.
COMPATIBLE = {
    "completed": {"COMPLETED"},
    "preempted": {"PREEMPTED", "REQUEUED", "CANCELLED"},
    "timeout": {"TIMEOUT", "DEADLINE", "REQUEUED", "PREEMPTED", "CANCELLED"},
    "failed": {"FAILED", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY"},
    "interrupted": {"CANCELLED", "FAILED", "PREEMPTED", "REQUEUED"},
    "cancelled": {"CANCELLED"},
}
TIME_SLACK_S = 5.0          # clock and rounding slack between the two sources
WINDOW_S = 7 * 86400        # rows this far outside the experiment's span are another job with a reused id


@dataclass
class Entry:
    run_key: str | None                 # None: Slurm usage no attempt record accounts for
    arm: str
    stage: str | None
    domain: str | None
    source: str                         # slurm+job | slurm | job
    executor: str | None
    job_id: str | None                  # "123" or "123_4"
    job_id_raw: str | None
    restart: int | None                 # position among the job's -D rows / SLURM_RESTART_COUNT
    attempts: list[int]                 # job-side attempt numbers in this entry
    partition: str | None
    nodes: int | None
    gpus: int
    cpus: int | None
    submit: float | None
    start: float | None
    end: float | None
    elapsed_s: float
    state: str                          # the reconciled state (Slurm's where it has a row)
    slurm_state: str | None
    job_state: str | None
    steps_done: int | None
    step_end: int | None
    gpu_s: float                        # the figure that counts
    job_gpu_s: float | None             # the job side's own figure, for comparison
    lost_work_s: float | None
    queued_s: float | None
    resume_overhead_s: float | None     # a resumed attempt's start to its first step
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def lost_gpu_s(self) -> float:
        return (self.lost_work_s or 0.0) * self.gpus

    @property
    def interrupted(self) -> bool:
        return self.state in INTERRUPTED


@dataclass
class RunTotals:
    """A run's entries and their sums (computed once: read them after `reconcile` returns)."""
    run: RunInfo
    entries: list[Entry]

    def _sum(self, attr: str) -> float:
        return float(sum(getattr(e, attr) or 0.0 for e in self.entries))

    @cached_property
    def gpu_s(self) -> float:
        return self._sum("gpu_s")

    @cached_property
    def gpu_s_slurm(self) -> float:
        return float(sum(e.gpu_s for e in self.entries if e.source != "job"))

    @cached_property
    def gpu_s_jobside(self) -> float:
        return float(sum(e.gpu_s for e in self.entries if e.source == "job"))

    @cached_property
    def job_gpu_s(self) -> float:
        return self._sum("job_gpu_s")

    @cached_property
    def lost_gpu_s(self) -> float:
        return float(sum(e.lost_gpu_s for e in self.entries))

    @cached_property
    def lost_work_s(self) -> float:
        return self._sum("lost_work_s")

    @cached_property
    def resume_overhead_gpu_s(self) -> float:
        return float(sum((e.resume_overhead_s or 0.0) * e.gpus for e in self.entries))

    @cached_property
    def queued_s(self) -> float | None:
        q = [e.queued_s for e in self.entries if e.queued_s is not None]
        return float(sum(q)) if q else None

    @cached_property
    def interruptions(self) -> int:
        return sum(1 for e in self.entries if e.interrupted)

    @cached_property
    def gpus(self) -> int:
        g = [e.gpus for e in self.entries if e.gpus]
        return max(g) if g else (self.run.configured_gpus or 0)

    @cached_property
    def executors(self) -> list[str]:
        return sorted({e.executor for e in self.entries if e.executor})

    @cached_property
    def notes(self) -> list[str]:
        return [n for e in self.entries for n in e.notes]


@dataclass
class Ledger:
    scan: Scan
    entries: list[Entry]
    runs: dict[str, RunTotals]
    sacct_status: str                    # what was asked of Slurm, in words
    sacct_used: bool
    ignored_rows: list[SacctRow] = field(default_factory=list)  # reused job ids outside the span
    unit: str = "GPU"                    # what the `gpu*` figures count: "GPU", or "CPU" when no job had one

    @property
    def unattributed(self) -> list[Entry]:
        return [e for e in self.entries if e.run_key is None]

    @property
    def gpu_s(self) -> float:
        return float(sum(e.gpu_s for e in self.entries))

    @cached_property
    def slurm_entries(self) -> list[Entry]:
        """Entries counted from a Slurm accounting row."""
        return [e for e in self.entries if e.source != "job"]

    @cached_property
    def notes(self) -> list[str]:
        return [n for e in self.entries for n in e.notes]


def _job_end(a: dict) -> float | None:
    return a.get("end_time") if a.get("end_time") is not None else a.get("heartbeat")


def _job_duration(a: dict) -> float:
    end = _job_end(a)
    return max(0.0, end - a["start_time"]) if end is not None else 0.0


def _lost_work(a: dict, end: float | None) -> float | None:
    if a.get("lost_work_s") is not None:
        return float(a["lost_work_s"])
    if a.get("state") == "completed":
        return 0.0
    if end is None:
        return None
    since = a.get("last_checkpoint_time") or a["start_time"]
    return max(0.0, end - since)


def _resume_overhead(a: dict) -> float | None:
    if (a.get("step_start") or 0) <= 0 or a.get("first_step_time") is None:
        return None
    return max(0.0, a["first_step_time"] - a["start_time"])


def _contains(row: SacctRow, a: dict, now: float) -> bool:
    if row.start is None:
        return False
    end = row.end if row.end is not None else now
    return row.start - TIME_SLACK_S <= a["start_time"] <= end + TIME_SLACK_S


def reconcile(scan: Scan, rows: Iterable[SacctRow] | None, sacct_status: str = "", now: float | None = None) -> Ledger:
    """`rows` None: Slurm accounting was not consulted (a local-only experiment, or --no-sacct)."""
    now = time.time() if now is None else now
    sacct_used = rows is not None
    rows = list(rows or [])
    pairs = scan.attempts
    cpu = not (any(r.gpus for r in rows) or any(a.get("gpus") for _, a in pairs)
               or any(run.configured_gpus for run in scan.runs.values()))
    by_raw: dict[str, list[tuple[RunInfo, dict]]] = defaultdict(list)
    by_jobid: dict[str, list[tuple[RunInfo, dict]]] = defaultdict(list)
    for run, a in pairs:
        if a.get("slurm_job_id"):
            by_raw[a["slurm_job_id"]].append((run, a))
        elif a.get("job_id") and a.get("executor") == "slurm":
            by_jobid[a["job_id"]].append((run, a))
    # the span of the experiment, to recognise rows of another job that reused an id
    starts = [a["start_time"] for _, a in pairs]
    ends = [_job_end(a) or a["start_time"] for _, a in pairs]
    lo, hi = (min(starts) - WINDOW_S, max(ends) + WINDOW_S) if starts else (float("-inf"), float("inf"))

    rows_by_raw: dict[str, list[SacctRow]] = defaultdict(list)
    for r in rows:
        rows_by_raw[r.job_id_raw].append(r)
    restart_of: dict[SacctRow, int] = {}
    for raw, rs in rows_by_raw.items():
        rs.sort(key=lambda r: (r.submit or 0.0, r.start or float("inf")))
        for i, r in enumerate(rs):
            restart_of[r] = i

    matched: dict[int, SacctRow] = {}  # id(attempt) -> row
    entries: list[Entry] = []
    ignored: list[SacctRow] = []
    for r in sorted(rows, key=lambda r: (r.start or r.submit or 0.0, r.job_id_raw)):
        cands = by_raw.get(r.job_id_raw, []) + by_jobid.get(r.job_id, [])
        hits = [(run, a) for run, a in cands if id(a) not in matched and _contains(r, a, now)]
        if len(hits) > 1:  # several attempts in one allocation: keep those whose restart count fits
            fit = [(run, a) for run, a in hits if a.get("restart_count", 0) == restart_of[r]]
            hits = fit or hits
        t = r.start if r.start is not None else r.submit
        if not hits and t is not None and not (lo <= t <= hi):
            ignored.append(r)
            continue
        for _, a in hits:
            matched[id(a)] = r
        entries.append(_row_entry(r, restart_of[r], hits, cands, cpu))
    for run, a in pairs:
        if id(a) not in matched:
            entries.append(_attempt_entry(run, a, sacct_used, cpu))

    runs = {k: RunTotals(run, []) for k, run in scan.runs.items()}
    for e in entries:
        if e.run_key in runs:
            runs[e.run_key].entries.append(e)
    for t in runs.values():
        t.entries.sort(key=lambda e: (e.start or e.submit or 0.0))
    return Ledger(scan, entries, runs, sacct_status, sacct_used, ignored, "CPU" if cpu else "GPU")


def _row_entry(r: SacctRow, restart: int, hits: list[tuple[RunInfo, dict]],
               cands: list[tuple[RunInfo, dict]], cpu: bool = False) -> Entry:
    notes: list[str] = []
    n, key = (r.cpus, "cpus") if cpu else (r.gpus, "gpus")
    slurm_state = SLURM_STATES.get(r.state, r.state.lower())
    where = f"job {r.job_id} (raw {r.job_id_raw}) run {restart}"
    if hits:
        run = hits[0][0]
    else:
        owners = {c[0].key: c[0] for c in cands}
        run = next(iter(owners.values())) if len(owners) == 1 else None
        if r.start is None:
            if r.state != "PENDING":
                notes.append(f"{where}: {r.state_raw}, never started (no GPU time)")
        elif r.state in ("RUNNING", "COMPLETING"):
            notes.append(f"{where}: running, no attempt record yet")
        else:
            who = "its run" if run else "no run (no attempt record names this job)"
            notes.append(f"{where}: Slurm counts {r.elapsed_s} s x {n} {key[:3].upper()} but no attempt record "
                         f"matches (the job died before the runtime wrote one, or its record was lost or "
                         f"corrupt); counted from Slurm for {who}")
    atts = [a for _, a in hits]
    job_gpu = float(sum(_job_duration(a) * (a.get(key) or 0) for a in atts)) if atts else None
    lost = None
    job_state = None
    steps = None
    step_end = None
    overhead = None
    for a in atts:
        job_state = a.get("state")
        end = a.get("end_time")
        if end is None:  # killed hard: Slurm's end (or the heartbeat) closes it
            end = r.end if r.end is not None else (None if r.state == "RUNNING" else a.get("heartbeat"))
            if r.state not in ("RUNNING", "COMPLETING"):
                job_state = "killed"
                notes.append(f"{where}: attempt {a['attempt']} has no end record (killed hard); lost work "
                             f"counted from its last checkpoint to Slurm's End")
        lw = _lost_work(a, end) if job_state not in ("running",) else None
        if lw is not None:
            lost = (lost or 0.0) + lw
        steps = (steps or 0) + a.get("steps_done", 0)
        step_end = max(step_end or 0, a.get("step_end") or 0)
        ro = _resume_overhead(a)
        if ro is not None:
            overhead = (overhead or 0.0) + ro + max(0.0, a["start_time"] - (r.start or a["start_time"]))
        if not cpu and a.get("gpus") is not None and a["gpus"] != r.gpus:
            notes.append(f"{where}: GPUs differ: attempt {a['attempt']} says {a['gpus']}, Slurm's AllocTRES "
                         f"says {r.gpus} (Slurm's figure counts)")
        st = a.get("state")
        if st in COMPATIBLE and a.get("end_time") is not None and r.state not in COMPATIBLE[st] \
                and r.state not in ("RUNNING", "COMPLETING"):
            notes.append(f"{where}: states differ: the job recorded {st!r}, Slurm says {r.state_raw}")
        dur = _job_duration(a)
        if r.start is not None and dur > r.elapsed_s + TIME_SLACK_S and r.state not in ("RUNNING", "COMPLETING"):
            notes.append(f"{where}: attempt {a['attempt']} ran {dur:.0f} s by its own clock, more than "
                         f"Slurm's elapsed {r.elapsed_s} s")
        if a.get("restart_count") is not None and a["restart_count"] != restart and r.job_id_raw == a.get("slurm_job_id"):
            notes.append(f"{where}: SLURM_RESTART_COUNT was {a['restart_count']} but this is -D row {restart} "
                         f"of the job")
    state = slurm_state
    if job_state == "killed" and slurm_state == "completed":
        state = "killed"
    return Entry(
        run_key=run.key if run else None, arm=run.arm if run else "unattributed",
        stage=run.stage if run else None, domain=run.domain if run else None,
        source="slurm+job" if atts else "slurm", executor="slurm", job_id=r.job_id, job_id_raw=r.job_id_raw,
        restart=restart, attempts=[a["attempt"] for a in atts], partition=r.partition, nodes=r.nodes,
        gpus=n, cpus=r.cpus, submit=r.submit, start=r.start, end=r.end, elapsed_s=float(r.elapsed_s),
        state=state, slurm_state=r.state_raw, job_state=job_state, steps_done=steps, step_end=step_end,
        gpu_s=float(r.elapsed_s * n), job_gpu_s=job_gpu, lost_work_s=lost, queued_s=r.queued_s,
        resume_overhead_s=overhead, notes=notes, files=[a["_file"] for a in atts if "_file" in a])


def _attempt_entry(run: RunInfo, a: dict, sacct_used: bool, cpu: bool = False) -> Entry:
    notes: list[str] = []
    state = JOB_STATES.get(a.get("state"), a.get("state") or "unknown")
    end = _job_end(a)
    where = f"attempt {a['attempt']} of {run.key}"
    if a.get("end_time") is None:
        later = any(b["start_time"] > a["start_time"] for b in run.attempts)
        if later or run.finished:
            state = "killed"
            notes.append(f"{where}: no end record (killed hard); time counted to its last heartbeat, a lower bound")
        else:
            state = "running"
    gpus = (a.get("cpus") or 1) if cpu else (a.get("gpus") or 0)
    dur = _job_duration(a)
    if a.get("executor") == "slurm":
        if sacct_used:
            notes.append(f"{where}: Slurm job {a.get('job_id')} (raw {a.get('slurm_job_id')}) has no sacct row "
                         f"covering it (accounting lost or purged?); counted from the job-side record")
        else:
            notes.append(f"{where}: Slurm job not checked against sacct; counted from the job-side record")
    lost = _lost_work(a, end) if state != "running" else None
    return Entry(
        run_key=run.key, arm=run.arm, stage=run.stage, domain=run.domain, source="job",
        executor=a.get("executor"), job_id=a.get("job_id"), job_id_raw=a.get("slurm_job_id"),
        restart=a.get("restart_count"), attempts=[a["attempt"]], partition=a.get("partition"),
        nodes=a.get("nodes"), gpus=gpus, cpus=a.get("cpus"), submit=None, start=a["start_time"], end=end,
        elapsed_s=dur, state=state, slurm_state=None, job_state=a.get("state"), steps_done=a.get("steps_done"),
        step_end=a.get("step_end"), gpu_s=dur * gpus, job_gpu_s=dur * gpus, lost_work_s=lost, queued_s=None,
        resume_overhead_s=_resume_overhead(a), notes=notes, files=[a["_file"]] if "_file" in a else [])
