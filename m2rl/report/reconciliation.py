"""The report's reconciliation of Slurm accounting with the job-side attempt records."""
from __future__ import annotations

from m2rl.ledger import Ledger

from .fmt import MAX_NOTES, MAX_ROWS, fmt_ts
from .render import Doc


def reconciliation_section(doc: Doc, led: Ledger) -> None:
    U = led.unit
    doc.h(1, "Reconciliation with Slurm accounting")
    alloc = "gres/gpu of AllocTRES" if U == "GPU" else "AllocCPUS"
    doc.p(f"Accounting: {led.sacct_status}. Rules: a Slurm `sacct -D` row is the authority for {U} time "
          f"(ElapsedRaw x {alloc}, every run of a requeued job and every array task); attempt records "
          "add steps and lost work; attempts no row covers (local executor, accounting missing) count as "
          f"configured {U}s x their own wall time.")
    rows = []
    for t in sorted(led.runs.values(), key=lambda t: t.run.key)[:MAX_ROWS]:
        slurm = [e for e in t.entries if e.source != "job"]
        diff = (t.gpu_s_slurm - sum(e.job_gpu_s or 0 for e in slurm)) if slurm else None
        rows.append([t.run.key, len(slurm), f"{t.gpu_s_slurm:,.0f}", f"{t.job_gpu_s:,.0f}", f"{t.gpu_s:,.0f}",
                     "" if diff is None else f"{diff:+,.0f}", len(t.notes)])
    un = led.unattributed
    if un:
        rows.append(["unattributed", len(un), f"{sum(e.gpu_s for e in un):,.0f}", "0",
                     f"{sum(e.gpu_s for e in un):,.0f}", "", sum(len(e.notes) for e in un)])
    rows.append(["**total**", sum(r[1] for r in rows), f"{sum(e.gpu_s for e in led.slurm_entries):,.0f}",
                 f"{sum(e.job_gpu_s or 0 for e in led.entries):,.0f}", f"{led.gpu_s:,.0f}", "",
                 len(led.notes)])
    doc.table(["run", "Slurm rows", f"Slurm {U}-s", f"job-side {U}-s", f"counted {U}-s",
               "Slurm - job-side (rows with both)", "notes"], rows,
              caption="Slurm's elapsed time includes start-up before the runtime's first record and teardown "
                      "after its last: a positive difference of seconds per attempt is expected.")
    if led.ignored_rows:
        doc.p(f"{len(led.ignored_rows)} sacct row(s) with this experiment's job ids lie more than a week outside "
              f"its attempts (a job id reused after a cluster reset) and were not counted: "
              + ", ".join(f"{r.job_id} ({fmt_ts(r.start or r.submit)})" for r in led.ignored_rows[:10]))
    notes = [(e.run_key or "unattributed", n) for e in led.entries for n in e.notes]
    if notes:
        doc.h(2, "Disagreements and gaps")
        doc.items([f"{k}: {n}" for k, n in notes[:MAX_NOTES]])
        if len(notes) > MAX_NOTES:
            doc.p(f"... and {len(notes) - MAX_NOTES} more, in the `notes` column of ledger.csv.")
    else:
        doc.p(f"No disagreements: every Slurm row has its attempt record and they agree on {U}s and state.")
