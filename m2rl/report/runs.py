"""The report's per-run sections: what each run is and cost, and where its curves are."""
from __future__ import annotations

from pathlib import Path

from m2rl.ledger import Ledger

from . import compare
from .fmt import MAX_ROWS, fmt_h, fmt_num, rel
from .render import Doc


def runs_section(doc: Doc, led: Ledger, files, out) -> None:
    U = led.unit
    doc.h(1, "Runs")
    ts = sorted(led.runs.values(), key=lambda t: (compare.ARM_ORDER.index(t.run.arm)
                                                  if t.run.arm in compare.ARM_ORDER else 9, t.run.key))
    rows = []
    for t in ts[:MAX_ROWS]:
        kinds = {e.source != "job" for e in t.entries}
        src = {frozenset({True}): "Slurm", frozenset({False}): "job-side", frozenset(): "no attempt records"}.get(
            frozenset(kinds), "Slurm + job-side")
        rows.append([t.run.key, t.run.arm, fmt_num(t.run.batch), fmt_num(t.run.rollouts), fmt_num(t.run.steps),
                     t.gpus, fmt_h(t.gpu_s), f"{t.gpu_s:,.0f}", "yes" if t.run.finished else "no",
                     src + (f" ({', '.join(t.executors)})" if t.executors and t.executors != ["slurm"] else "")])
    doc.table(["run", "arm", "batch", "rollouts", "steps", f"{U}s", f"{U} hours", f"{U}-seconds", "finished",
               "counted from"], rows, align="llrrrrrrll",
              caption=(f"First {MAX_ROWS} of {len(ts)} runs; all are in summary.json." if len(ts) > MAX_ROWS else ""))
    if (r := rel(files, "runs", out)):
        doc.img(*r, f"{U} time per run")


def tensorboard_section(doc: Doc, exp: Path, led: Ledger) -> None:
    doc.h(1, "Training curves")
    tb = sorted(k for k, t in led.runs.items() if (t.run.path / "tb").is_dir())
    doc.p(f"Training curves are in TensorBoard, not in this report: `tensorboard --logdir {exp}` (each run logs "
          f"to `<stage>/<run>/tb/`). " + (f"Runs with logs: {', '.join(tb[:30])}{' ...' if len(tb) > 30 else ''}."
                                           if tb else "No run has written TensorBoard logs yet."))
