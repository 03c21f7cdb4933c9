"""`stage=report`: write the GPU-hour report of `<paths.root>/<experiment.name>`.

Same output as `python -m m2rl.report <experiment dir>`, in `<experiment dir>/report/`.
The job's own attempt is in the ledger it reports on (arm `report`, still running).
Like every run it is skipped once finished (DONE.json): for a fresh report after more
runs, relaunch with another `run.name`, or use the command line.
"""
from __future__ import annotations

from m2rl.runtime import JobContext
from m2rl.runtime.rundir import experiment_dir
from m2rl.stage import Stage


def run(ctx: JobContext) -> dict:
    from m2rl.report import generate

    rep = generate(experiment_dir(ctx.cfg))
    s = rep.summary
    return {"step": 0, "report": str(rep.files["md"]), "html": str(rep.files["html"]), "runs": len(s["runs"]),
            "gpu_s": s["gpu_s"], "mixed_over_separate_rl": s["ratios"]["mixed_over_separate_rl"],
            "skipped_files": len(rep.problems), "notes": rep.notes}


STAGE = Stage("report", run, reads=("every run's attempt records and DONE.json, sacct -D, eval results",),
              writes=("<exp>/report/: report.md, report.html, summary.json, ledger.csv, plots",))
