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


def signal_section(doc: Doc, led: Ledger) -> None:
    """Runs that had nothing to learn from: every group's rewards equal (zero advantage) on
    many steps, or rewards the verifier could not give."""
    rows, dead = [], []
    for key, t in sorted(led.runs.items()):
        sig = t.run.learning_signal
        if not sig or not sig.get("steps"):
            continue
        steps, zero = int(sig["steps"]), int(sig.get("zero_advantage_steps", 0))
        rows.append([key, fmt_num(steps), f"{zero} ({zero / steps:.0%})", fmt_num(sig.get("longest_zero_streak", 0)),
                     f"{float(sig.get('verifier_error_frac', 0.0)):.1%}"])
        if sig.get("warned") or zero == steps:
            dead.append(key)
    if not rows:
        return
    doc.h(2, "Learning signal")
    if dead:
        doc.warn(f"{', '.join(dead[:10])}{' ...' if len(dead) > 10 else ''}: long runs of steps where every group's "
                 "rollouts got the same reward, so the advantages and the gradient were zero. The model never (or "
                 "always) solves these prompts: start RL from an SFT checkpoint, use easier data or bigger groups.")
    doc.table(["run", "steps", "zero-advantage steps", "longest streak", "verifier failures"], rows, align="lrrrr",
              caption="Zero-advantage step: every group's rewards equal. Verifier failures: completions the "
                      "verifier crashed or timed out on (scored 0).")


def tensorboard_section(doc: Doc, exp: Path, led: Ledger) -> None:
    doc.h(1, "Training curves")
    tb = sorted(k for k, t in led.runs.items() if (t.run.path / "tb").is_dir())
    doc.p(f"Training curves are in TensorBoard, not in this report: `tensorboard --logdir {exp}` (each run logs "
          f"to `<stage>/<run>/tb/`). " + (f"Runs with logs: {', '.join(tb[:30])}{' ...' if len(tb) > 30 else ''}."
                                           if tb else "No run has written TensorBoard logs yet."))
