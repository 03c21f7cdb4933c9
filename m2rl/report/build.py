"""Build the report: the ledger and eval results in, the documents and data files out."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from m2rl import ledger as L
from m2rl.ledger import Ledger, Problem

from . import accuracy, compare, cost, datafiles, evals, plots, preemption, reconciliation, runs
from .datafiles import write
from .fmt import fmt_ts
from .render import Doc, to_html, to_markdown


@dataclass
class Report:
    out_dir: Path
    files: dict[str, Path]
    summary: dict
    problems: list[Problem] = field(default_factory=list)
    notes: int = 0

    @property
    def markdown(self) -> Path:
        return self.files["md"]


def generate(exp_dir: str | Path, out_dir: str | Path | None = None, sacct_source: str | Path = "auto",
             now: float | None = None) -> Report:
    """Build the ledger and write the report. Raises m2rl.ledger.NoExperiment,
    SacctUnavailable or SacctParseError, whose messages are meant for the user."""
    exp = Path(exp_dir).absolute()
    led, sacct_text = L.build(exp, sacct_source, now)
    out = Path(out_dir) if out_dir else exp / "report"
    (out / "plots").mkdir(parents=True, exist_ok=True)
    problems = list(led.scan.problems)
    results = evals.load(led, problems)
    comp = compare.compare(led)

    files: dict[str, Path] = {}
    for name, fn, args in (("arms", plots.arms, (comp,)), ("ratios", plots.ratios, (comp,)),
                           ("runs", plots.runs, (list(led.runs.values()),)),
                           ("cost_vs_accuracy", plots.cost_vs_accuracy, (results,))):
        p = fn(*args, out / "plots" / f"{name}.png", led.unit)
        if p is not None:
            files[name] = p

    doc = document(exp, led, comp, results, problems, files, out)
    files["md"] = write(out / "report.md", to_markdown(doc))
    files["html"] = write(out / "report.html", to_html(doc))
    files["csv"] = datafiles.ledger_csv(led, out / "ledger.csv")
    summary = datafiles.summary(exp, led, comp, results, problems)
    files["json"] = write(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if sacct_text:
        files["sacct"] = write(out / "sacct.psv", sacct_text)
    return Report(out, files, summary, problems, len(led.notes))


def document(exp: Path, led: Ledger, comp: compare.Comparison, results: list[evals.EvalResult],
              problems: list[Problem], files: dict[str, Path], out: Path) -> Doc:
    U = led.unit
    doc = Doc(f"{U}-hour report: {exp.name}")
    n_att = sum(len(t.run.attempts) for t in led.runs.values())
    n_rows = len(led.slurm_entries)
    doc.p(f"Experiment `{exp}`; generated {fmt_ts(time.time())}. Ledger: {len(led.runs)} runs, {n_att} attempt "
          f"records, {n_rows} Slurm accounting rows. Accounting: {led.sacct_status}.")
    if U != "GPU":
        doc.warn(f"No job of this experiment had a GPU: its cost is counted in {U}-hours (allocated {U}s x wall "
                 "time), where a GPU experiment counts GPU-hours.")
    if problems:
        doc.warn(f"{len(problems)} input file(s) could not be used and were skipped: see *Problems* at the end. "
                 "A skipped attempt record's Slurm time still counts when another record names its job.")
    if not led.sacct_used and any(e.executor == "slurm" for e in led.entries):
        doc.warn(f"Slurm jobs are counted from job-side records only: sacct was not consulted, so {U} time the "
                 "runtime did not see (start-up, a job killed before its first record) is missing.")
    n_notes = len(led.notes)
    if n_notes:
        doc.warn(f"{n_notes} disagreement(s) or gap(s) between Slurm accounting and the job-side records: "
                 "see *Reconciliation*.")
    cost.summary_section(doc, led, comp, files, out)
    cost.ratios_section(doc, comp, files, out, U)
    runs.runs_section(doc, led, files, out)
    runs.signal_section(doc, led)
    preemption.interruptions_section(doc, led)
    accuracy.accuracy_section(doc, results, comp, files, out, U)
    runs.tensorboard_section(doc, exp, led)
    reconciliation.reconciliation_section(doc, led)
    doc.h(1, "Problems")
    if problems:
        doc.p(f"{len(problems)} file(s) skipped:")
        doc.items([f"`{p.path}`: {p.kind}: {p.message}" for p in problems])
    else:
        doc.p("None: every attempt record, config and result file was read.")
    return doc
