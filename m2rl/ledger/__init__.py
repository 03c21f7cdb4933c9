"""The GPU-hour ledger: every attempt of every job, reconciled with Slurm accounting.

Records. The job runtime (`m2rl.runtime.attempts`) writes one JSON file per attempt,
`<exp>/<stage>/<run>/attempts/attempt-NNNN.json`: claimed by hard-linking a fully written
first version to its name (two attempts never share a file, no reader sees an empty one),
every later write a temp file + fsync + rename (a reader sees the old or the new
record, never a torn one). Why files and not SQLite in WAL mode: WAL needs a shared-memory
index that all writers mmap on one host, so it is unsafe on the network file systems
(NFS, Lustre) that Slurm jobs on many nodes write to; per-attempt files need no lock and
no server, a killed writer can damage only its own record, and the ledger travels with
the run dirs (rsync an experiment, report anywhere). The reader pays one open per
attempt: 10,000 records scan in well under a second (tools/bench_report.py).

Reconciliation (`reconcile`): `sacct -D` rows are the authority for GPU-seconds; attempt
records add steps, lost work and the run identity; local runs count from their records.
See `reconcile.py` for the rules and `m2rl.report` for how it is shown.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import sacct
from .reconcile import Entry, Ledger, RunTotals, reconcile
from .records import NoExperiment, Problem, RunInfo, Scan, scan
from .sacct import SacctParseError, SacctRow, SacctUnavailable

__all__ = ["Entry", "Ledger", "NoExperiment", "Problem", "RunInfo", "RunTotals", "SacctParseError", "SacctRow",
           "SacctUnavailable", "Scan", "build", "reconcile", "scan", "slurm_job_ids"]


def submitted_job_ids(exp_dir: Path) -> dict[str, float]:
    """Slurm jobs submitted for this experiment, from submitit's folder
    (`<exp>/.submitit/<id>/<id>_submission.sh`, written for every sbatch, array or not; the
    local executor writes none): job id -> submission time. This finds jobs whose record is
    missing or corrupt, and jobs that died before the runtime wrote one."""
    out: dict[str, float] = {}
    folder = Path(exp_dir) / ".submitit"
    if folder.is_dir():
        for d in folder.iterdir():
            f = d / f"{d.name}_submission.sh"
            if d.name.isdigit() and f.is_file():
                out[d.name] = f.stat().st_mtime
    return out


def slurm_job_ids(s: Scan, submitted: dict[str, float]) -> set[str]:
    """The ids to ask sacct about: array job ids (all their tasks) and raw job ids, from
    the attempt records and from submitit's folder (`submitted_job_ids`)."""
    ids: set[str] = set(submitted)
    for _, a in s.attempts:
        if a.get("executor") != "slurm" and not a.get("slurm_job_id"):
            continue
        for key in ("array_job_id", "slurm_job_id"):
            if a.get(key):
                ids.add(a[key])
        if a.get("job_id") and not a.get("slurm_job_id"):
            ids.add(a["job_id"].split("_", 1)[0])
    return {i for i in ids if i.isdigit()}


def _ours(rows: list[SacctRow], ids: set[str]) -> list[SacctRow]:
    return [r for r in rows if r.job_id_raw in ids or (r.array_job_id or r.job_id) in ids]


def build(exp_dir: str | Path, sacct_source: str | Path = "auto", now: float | None = None) -> tuple[Ledger, str]:
    """Scan the experiment, fetch its sacct rows, reconcile. Returns the ledger and the
    raw sacct text used ("" when none).

    sacct_source: "auto" (query sacct when the experiment has Slurm jobs), "off" (count
    everything from job-side records), or a file of captured `sacct -D -X -P` output.
    Raises NoExperiment, SacctUnavailable, SacctParseError with a message for the user."""
    s = scan(exp_dir)
    submitted = submitted_job_ids(s.exp_dir)
    ids = slurm_job_ids(s, submitted)
    if sacct_source == "off":
        status = ("Slurm accounting not consulted (--no-sacct): every figure below comes from job-side "
                  "records" + (f", including {len(ids)} Slurm job(s) that sacct could check" if ids else ""))
        return reconcile(s, None, status, now), ""
    if sacct_source != "auto":
        path = Path(sacct_source)
        try:
            text = path.read_text()
        except OSError as err:
            raise SacctUnavailable(f"cannot read the sacct file {path}: {err}") from None
        rows = _ours(sacct.dedupe(sacct.parse(text)), ids)
        return reconcile(s, rows, f"sacct rows read from {path} ({len(rows)} rows of this experiment's jobs)", now), text
    if not ids:
        status = "no Slurm jobs in this experiment: every run is counted from job-side records"
        return reconcile(s, None, status, now), ""
    first = min([a["start_time"] for _, a in s.attempts] + list(submitted.values()))
    since = first - 86400  # a day before the first attempt: queued time before it is still in range
    rows, text = sacct.query(sorted(ids), since)
    rows = _ours(rows, ids)
    status = (f"`sacct -D -X -P -S {time.strftime('%Y-%m-%d', time.localtime(since))} -j <{len(ids)} job ids>` "
              f"at {time.strftime('%Y-%m-%d %H:%M:%S')}: {len(rows)} rows")
    return reconcile(s, rows, status, now), text
