"""The report's data files: ledger.csv (one row per ledger entry) and summary.json (the
report's figures, for scripts and tests)."""
from __future__ import annotations

import csv
import time
from pathlib import Path

from m2rl.ledger import Ledger
from m2rl.runtime import atomic

from . import compare


def write(path: Path, text: str) -> Path:
    atomic.write_text(path, text)
    return path


CSV_FIELDS = ("run", "arm", "stage", "domain", "source", "executor", "job_id", "job_id_raw", "restart", "attempts",
              "partition", "nodes", "gpus", "cpus", "submit", "start", "end", "elapsed_s", "state", "slurm_state",
              "job_state", "steps_done", "step_end", "gpu_s", "job_gpu_s", "lost_work_s", "lost_gpu_s", "queued_s",
              "resume_overhead_s", "notes", "files")


def ledger_csv(led: Ledger, path: Path) -> Path:
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for e in sorted(led.entries, key=lambda e: (e.run_key or "~", e.start or e.submit or 0)):
        w.writerow([e.run_key or "", e.arm, e.stage, e.domain, e.source, e.executor, e.job_id, e.job_id_raw,
                    e.restart, " ".join(map(str, e.attempts)), e.partition, e.nodes, e.gpus, e.cpus, e.submit,
                    e.start, e.end, e.elapsed_s, e.state, e.slurm_state, e.job_state, e.steps_done, e.step_end,
                    e.gpu_s, e.job_gpu_s, e.lost_work_s, e.lost_gpu_s, e.queued_s, e.resume_overhead_s,
                    " | ".join(e.notes), " ".join(e.files)])
    return write(path, buf.getvalue())


def group_json(g: compare.Group) -> dict:
    prompts, measured = g.prompts
    return {"runs": [t.run.key for t in g.runs], "gpu_s": g.gpu_s, "gpu_h": g.gpu_s / 3600, "steps": g.steps,
            "prompts": prompts, "prompts_measured": measured, "generated_tokens": g.tokens,
            "lost_gpu_s": g.lost_gpu_s, "queued_s": g.queued_s,
            "gpu_s_per_step": g.per("step"), "gpu_s_per_prompt": g.per("prompt"), "gpu_s_per_token": g.per("token")}


def summary(exp: Path, led: Ledger, comp: compare.Comparison, results, problems) -> dict:
    sep = comp.separate_rl
    return {
        "experiment": exp.name, "experiment_dir": str(exp), "generated_at": time.time(),
        "unit": led.unit,  # what every gpu_* figure counts: "GPU", or "CPU" when no job had a GPU
        "sacct": {"status": led.sacct_status, "used": led.sacct_used,
                  "rows": len(led.slurm_entries),
                  "gpu_s": sum(e.gpu_s for e in led.slurm_entries),
                  "ignored_rows": len(led.ignored_rows)},
        "gpu_s": led.gpu_s, "gpu_h": led.gpu_s / 3600,
        "arms": {g.name: group_json(g) for g in comp.groups},
        "unattributed_gpu_s": comp.unattributed_gpu_s,
        "ratios": {"mixed_over_separate_rl": comp.headline,
                   "mixed_over_separate_with_merge": comp.ratio(comp.mixed, comp.separate),
                   "mixed_over_separate_per_step": comp.ratio(comp.mixed, sep, "step"),
                   "mixed_over_separate_per_prompt": comp.ratio(comp.mixed, sep, "prompt"),
                   "mixed_over_separate_per_token": comp.ratio(comp.mixed, sep, "token"),
                   "opd_over_separate_rl": comp.ratio(comp.opd, sep),
                   "opd_with_teachers_over_separate_rl": comp.ratio(comp.opd_teachers, sep)},
        "runs": {k: {"arm": t.run.arm, "stage": t.run.stage, "domain": t.run.domain, "batch": t.run.batch,
                     "rollouts": t.run.rollouts, "steps": t.run.steps, "gpus": t.gpus, "gpu_s": t.gpu_s,
                     "gpu_s_slurm": t.gpu_s_slurm, "gpu_s_jobside": t.gpu_s_jobside, "job_gpu_s": t.job_gpu_s,
                     "attempts": len(t.run.attempts), "entries": len(t.entries), "learning_signal": t.run.learning_signal, "interruptions": t.interruptions,
                     "lost_work_s": t.lost_work_s, "lost_gpu_s": t.lost_gpu_s, "queued_s": t.queued_s,
                     "resume_overhead_gpu_s": t.resume_overhead_gpu_s, "finished": t.run.finished,
                     "notes": t.notes} for k, t in sorted(led.runs.items())},
        "evals": [{"label": r.label, "model_run": r.model_run, "arm": r.arm, "stage": r.stage, "scores": r.scores,
                   "avg": r.avg, "k": {b: x.k for b, x in r.benches.items()}, "cost_gpu_s": r.cost_gpu_s,
                   "cost_note": r.cost_note} for r in results],
        "problems": [{"path": p.path, "kind": p.kind, "message": p.message} for p in problems],
        "notes": led.notes,
    }
