"""`python -m m2rl.report <experiment dir>`: what mixing and merging cost, and bought.

Reads the GPU-hour ledger (`m2rl.ledger`: every attempt record, reconciled with `sacct
-D`) and eval results (`m2rl.report.evals` documents their format), and writes into
`<experiment dir>/report/` (or `--out`):

    report.md      the report (tables; plots linked from plots/)
    report.html    the same, self-contained (plots embedded): open it in a browser
    plots/*.png    GPU cost per arm, ratios, per-run time lost and queued, cost vs accuracy
    ledger.csv     one row per ledger entry (Slurm run of a job, or attempt no row covers)
    summary.json   the figures of the report, for scripts and tests
    sacct.psv      the sacct rows used (a snapshot: `--sacct-file` reads it back)

The arms: separate = single-domain GRPO runs + merge jobs; mixed = the multi-task GRPO
run; MT-OPD = the distillation run, alone and with its teachers (the single-domain runs);
base (SFT) is shared by all and sits outside the comparison; eval runs cost a line of
their own, in no arm. The headline ratio is the study's: mixed / single-domain RL runs
(33.2% in the paper), without merge or MT-OPD.
"""
from __future__ import annotations

from .build import Report, generate
from .cost import STUDY_RATIO
from .fmt import MAX_NOTES, MAX_ROWS, fmt_dur, fmt_h, fmt_num, fmt_pct, fmt_ts

__all__ = ["Report", "generate", "STUDY_RATIO", "MAX_ROWS", "MAX_NOTES", "fmt_h", "fmt_dur", "fmt_pct", "fmt_num",
           "fmt_ts"]
