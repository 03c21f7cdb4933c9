"""The report's section on preemptions, lost work and queueing."""
from __future__ import annotations

from m2rl.ledger import Ledger

from .fmt import MAX_ROWS, fmt_dur, fmt_h, fmt_num, fmt_ts
from .render import Doc


def interruptions_section(doc: Doc, led: Ledger) -> None:
    U = led.unit
    doc.h(1, "Preemptions, lost work and queueing")
    ts = sorted(led.runs.values(), key=lambda t: (-t.lost_gpu_s, t.run.key))
    rows = []
    local = []
    for t in ts[:MAX_ROWS]:
        q = t.queued_s
        if q is None and t.entries and all(e.source == "job" for e in t.entries):
            local.append(t.run.key)
        rows.append([t.run.key, len(t.entries), t.interruptions, fmt_dur(t.lost_work_s), fmt_h(t.lost_gpu_s),
                     f"{t.lost_gpu_s:,.0f}", fmt_h(t.resume_overhead_gpu_s),
                     fmt_dur(q) if q is not None else "n/a (no Slurm record)"])
    doc.table(["run", "attempts", "interrupted", "work lost", f"{U} hours lost", f"{U}-seconds lost",
               f"resume overhead {U} hours", "queued"], rows,
              caption="Work lost = time from an interrupted attempt's last checkpoint to its end, redone by the "
              "next attempt. Resume overhead = a resumed attempt's start-up before its first step. Queued = "
              "Slurm Start - Submit, summed over the job's runs (a requeued run's Submit is its requeue time).")
    if local:
        doc.p(f"Queue time needs Slurm's Submit and Start: runs under the local executor (or not found in sacct) "
              f"have none ({', '.join(local[:20])}{' ...' if len(local) > 20 else ''}).")
    inter = [e for e in led.entries if e.interrupted]
    if inter:
        doc.h(2, "Interrupted attempts")
        rows = [[e.run_key or "unattributed", e.job_id or "", "" if e.restart is None else e.restart,
                 e.state, e.slurm_state or "", e.job_state or "", fmt_num(e.steps_done), fmt_dur(e.lost_work_s),
                 f"{e.lost_gpu_s:,.0f}", fmt_ts(e.end)]
                for e in sorted(inter, key=lambda e: (e.run_key or "", e.start or 0))[:MAX_ROWS]]
        doc.table(["run", "job", "restart", "state", "Slurm state", "job-side state", "steps done", "work lost",
                   f"{U}-s lost", "ended"], rows, align="lllllllrrl",
                  caption=f"{len(inter)} interrupted attempt(s)" + (f"; first {MAX_ROWS} shown, all in ledger.csv"
                                                                 if len(inter) > MAX_ROWS else ""))
