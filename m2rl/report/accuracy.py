"""The report's accuracy section: eval results (m2rl.report.evals) beside each model's cost."""
from __future__ import annotations

from . import evals
from .fmt import fmt_h, rel
from .render import Doc


def accuracy_section(doc: Doc, results: list[evals.EvalResult], files, out, U: str) -> None:
    if not results:
        return
    doc.h(1, "Accuracy")
    benches = sorted({b for r in results for b in r.scores})
    rows = [[r.label, r.arm, fmt_h(r.cost_gpu_s)] + [f"{r.scores[b]:.2f}" if b in r.scores else "" for b in benches]
            for r in results]
    doc.table(["model", "arm", f"RL {U} hours"] + benches, rows, align="llr" + "r" * len(benches),
              caption=f"RL {U} hours = what it took to produce the model beyond the shared base: merged models "
              "include the single-domain runs they merge, MT-OPD its teachers.")
    doc.items([f"{r.label}: {r.cost_note} (`{r.path}`)" for r in results])
    if (r := rel(files, "cost_vs_accuracy", out)):
        doc.img(*r, "cost vs accuracy")
