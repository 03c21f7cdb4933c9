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
base (SFT) is shared by all and sits outside the comparison. The headline ratio is the
study's: mixed / single-domain RL runs (33.2% in the paper), without merge or MT-OPD.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from m2rl import ledger as L
from m2rl.ledger import Ledger, Problem

from . import analysis, evals, plots
from .render import Doc, to_html, to_markdown

MAX_ROWS = 200    # table rows in the report; the full data is in ledger.csv
MAX_NOTES = 100
STUDY_RATIO = 2166.4 / (2172.8 + 3187.2 + 787.2 + 377.6)


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


def fmt_h(gpu_s: float | None) -> str:
    if gpu_s is None:
        return "n/a"
    h = gpu_s / 3600.0
    if h >= 10 or h == 0:
        return f"{h:.1f}"
    return f"{h:.2f}" if h >= 1 else f"{h:.4f}"


def fmt_dur(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 1:
        return f"{s:.2g} s"
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def fmt_pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def fmt_num(v: float | None, measured: bool = True) -> str:
    if v is None:
        return "n/a"
    s = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return s if measured else s + " (est.)"


def fmt_ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


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
    comp = analysis.compare(led)

    files: dict[str, Path] = {}
    for name, fn, args in (("arms", plots.arms, (comp,)), ("ratios", plots.ratios, (comp,)),
                           ("runs", plots.runs, (list(led.runs.values()),)),
                           ("cost_vs_accuracy", plots.cost_vs_accuracy, (results,))):
        p = fn(*args, out / "plots" / f"{name}.png", led.unit)
        if p is not None:
            files[name] = p

    doc = _document(exp, led, comp, results, problems, files, out)
    files["md"] = _write(out / "report.md", to_markdown(doc))
    files["html"] = _write(out / "report.html", to_html(doc))
    files["csv"] = _ledger_csv(led, out / "ledger.csv")
    summary = _summary(exp, led, comp, results, problems)
    files["json"] = _write(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if sacct_text:
        files["sacct"] = _write(out / "sacct.psv", sacct_text)
    return Report(out, files, summary, problems, len(led.notes))


def _write(path: Path, text: str) -> Path:
    from m2rl.runtime import atomic

    atomic.write_text(path, text)
    return path


# ---------------------------------------------------------------- the document

def _document(exp: Path, led: Ledger, comp: analysis.Comparison, results: list[evals.EvalResult],
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
    _summary_section(doc, led, comp, files, out)
    _ratios_section(doc, comp, files, out, U)
    _runs_section(doc, led, files, out)
    _interruptions_section(doc, led)
    _accuracy_section(doc, results, files, out, U)
    _tensorboard_section(doc, exp, led)
    _reconciliation_section(doc, led)
    doc.h(1, "Problems")
    if problems:
        doc.p(f"{len(problems)} file(s) skipped:")
        doc.items([f"`{p.path}`: {p.kind}: {p.message}" for p in problems])
    else:
        doc.p("None: every attempt record, config and result file was read.")
    return doc


def _rel(files: dict[str, Path], name: str, out: Path) -> tuple[Path, str] | None:
    p = files.get(name)
    return (p, str(p.relative_to(out))) if p else None


def _summary_section(doc: Doc, led: Ledger, comp: analysis.Comparison, files, out) -> None:
    U = led.unit
    doc.h(1, "Summary")
    sep, mix = comp.separate_rl, comp.mixed
    if comp.headline is not None:
        doc.p(f"**Mixed multi-task RL cost {fmt_h(mix.gpu_s)} {U}-hours, {comp.headline:.1%} of the "
              f"{fmt_h(sep.gpu_s)} {U}-hours of the {len(sep.runs)} separate single-domain RL runs** "
              f"(the study's definition; it published {STUDY_RATIO:.1%}). With the merge jobs, separate costs "
              f"{fmt_h(comp.separate.gpu_s)} {U}-hours (ratio {fmt_pct(comp.ratio(mix, comp.separate))}).")
    else:
        missing = [n for n, g in (("single-domain RL (grpo on one domain)", sep), ("mixed (grpo domain=multi)", mix))
                   if not g.runs]
        doc.p(f"No mixed/separate ratio: this experiment has no {' and no '.join(missing)} run.")
    if comp.opd.runs:
        doc.p(f"MT-OPD cost {fmt_h(comp.opd.gpu_s)} {U}-hours alone, {fmt_h(comp.opd_teachers.gpu_s)} with the "
              f"single-domain RL runs that serve as its teachers.")
    rows = []
    groups = [comp.separate_rl, comp.merges, comp.separate, comp.mixed, comp.opd, comp.opd_teachers, comp.base]
    groups += comp.others
    for g in groups:
        if not g.runs:
            continue
        prompts, measured = g.prompts
        rows.append([g.label, len(g.runs), fmt_h(g.gpu_s), fmt_num(g.steps), fmt_num(prompts, measured),
                     fmt_num(g.tokens), fmt_h(g.lost_gpu_s), fmt_dur(g.queued_s)])
    if comp.unattributed_gpu_s or led.unattributed:
        rows.append(["unattributed Slurm usage", "", fmt_h(comp.unattributed_gpu_s), "", "", "", "", ""])
    rows.append(["**all runs**", len(led.runs), fmt_h(led.gpu_s), "", "", "", fmt_h(sum(t.lost_gpu_s for t in
                 led.runs.values())), fmt_dur(sum(t.queued_s or 0 for t in led.runs.values()) or None)])
    doc.table(["arm", "runs", f"{U} hours", "steps", "prompts", "generated tokens", f"{U} hours lost",
               "queued"], rows, caption="Groups overlap (separate = RL + merge; MT-OPD + teachers includes the "
               "single-domain runs). est. = batch x steps, where DONE.json gives no `prompts` count.")
    if (r := _rel(files, "arms", out)):
        doc.img(*r, f"{U} cost per arm")


def _ratios_section(doc: Doc, comp: analysis.Comparison, files, out, U: str) -> None:
    doc.h(1, "Mixed vs separate, normalised")
    if not comp.separate_rl.runs:
        doc.p("No single-domain RL runs: nothing to normalise against.")
        return
    sep, mix, opd = comp.separate_rl, comp.mixed, comp.opd
    rows = [[f"{U} hours (the study's ratio)", fmt_h(sep.gpu_s), fmt_h(mix.gpu_s) if mix.runs else "n/a",
             fmt_pct(comp.ratio(mix, sep)), fmt_h(opd.gpu_s) if opd.runs else "n/a", fmt_pct(comp.ratio(opd, sep))],
            [f"{U} hours with merge jobs / teachers", fmt_h(comp.separate.gpu_s),
             fmt_h(mix.gpu_s) if mix.runs else "n/a", fmt_pct(comp.ratio(mix, comp.separate)),
             fmt_h(comp.opd_teachers.gpu_s) if opd.runs else "n/a", fmt_pct(comp.ratio(comp.opd_teachers, sep))]]
    for label, what, scale, unit in ((f"{U}-seconds per step", "step", 1.0, ""),
                                     (f"{U}-seconds per prompt", "prompt", 1.0, ""),
                                     (f"{U}-seconds per 1k generated tokens", "token", 1000.0, "")):
        f = lambda g: fmt_num(g.per(what) * scale) if g.runs and g.per(what) is not None else "n/a"  # noqa: E731
        rows.append([label, f(sep), f(mix), fmt_pct(comp.ratio(mix, sep, what)), f(opd),
                     fmt_pct(comp.ratio(opd, sep, what))])
    doc.table(["measure", "separate RL", "mixed", "mixed / separate", "MT-OPD", "MT-OPD / separate"], rows)
    notes = [f"Steps: separate {fmt_num(sep.steps)}, mixed {fmt_num(mix.steps)}, MT-OPD {fmt_num(opd.steps)}; "
             "a step is one optimizer step on one rollout batch, so per-step and per-prompt ratios compare equal "
             "amounts of training."]
    est = [t.run.key for g in (sep, mix, opd) for t in g.trainers
           if t.run.prompts[0] is not None and not t.run.prompts[1]]
    if est:
        notes.append(f"Prompts are batch x steps from the config where DONE.json has no `prompts` count: "
                     f"{', '.join(est)}.")
    no_tok = [t.run.key for g in (sep, mix, opd) for t in g.trainers if t.run.generated_tokens is None]
    if no_tok:
        notes.append(f"No per-token figure where a run's DONE.json has no `generated_tokens`: {', '.join(no_tok)}.")
    doc.items(notes)
    if (r := _rel(files, "ratios", out)):
        doc.img(*r, "ratios")


def _runs_section(doc: Doc, led: Ledger, files, out) -> None:
    U = led.unit
    doc.h(1, "Runs")
    ts = sorted(led.runs.values(), key=lambda t: (analysis.ARM_ORDER.index(t.run.arm)
                                                  if t.run.arm in analysis.ARM_ORDER else 9, t.run.key))
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
    if (r := _rel(files, "runs", out)):
        doc.img(*r, f"{U} time per run")


def _interruptions_section(doc: Doc, led: Ledger) -> None:
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


def _accuracy_section(doc: Doc, results: list[evals.EvalResult], files, out, U: str) -> None:
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
    if (r := _rel(files, "cost_vs_accuracy", out)):
        doc.img(*r, "cost vs accuracy")


def _tensorboard_section(doc: Doc, exp: Path, led: Ledger) -> None:
    doc.h(1, "Training curves")
    tb = sorted(k for k, t in led.runs.items() if (t.run.path / "tb").is_dir())
    doc.p(f"Training curves are in TensorBoard, not in this report: `tensorboard --logdir {exp}` (each run logs "
          f"to `<stage>/<run>/tb/`). " + (f"Runs with logs: {', '.join(tb[:30])}{' ...' if len(tb) > 30 else ''}."
                                           if tb else "No run has written TensorBoard logs yet."))


def _reconciliation_section(doc: Doc, led: Ledger) -> None:
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


# ---------------------------------------------------------------- data files

CSV_FIELDS = ("run", "arm", "stage", "domain", "source", "executor", "job_id", "job_id_raw", "restart", "attempts",
              "partition", "nodes", "gpus", "cpus", "submit", "start", "end", "elapsed_s", "state", "slurm_state",
              "job_state", "steps_done", "step_end", "gpu_s", "job_gpu_s", "lost_work_s", "lost_gpu_s", "queued_s",
              "resume_overhead_s", "notes", "files")


def _ledger_csv(led: Ledger, path: Path) -> Path:
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
    return _write(path, buf.getvalue())


def _group_json(g: analysis.Group) -> dict:
    prompts, measured = g.prompts
    return {"runs": [t.run.key for t in g.runs], "gpu_s": g.gpu_s, "gpu_h": g.gpu_s / 3600, "steps": g.steps,
            "prompts": prompts, "prompts_measured": measured, "generated_tokens": g.tokens,
            "lost_gpu_s": g.lost_gpu_s, "queued_s": g.queued_s,
            "gpu_s_per_step": g.per("step"), "gpu_s_per_prompt": g.per("prompt"), "gpu_s_per_token": g.per("token")}


def _summary(exp: Path, led: Ledger, comp: analysis.Comparison, results, problems) -> dict:
    sep = comp.separate_rl
    return {
        "experiment": exp.name, "experiment_dir": str(exp), "generated_at": time.time(),
        "unit": led.unit,  # what every gpu_* figure counts: "GPU", or "CPU" when no job had a GPU
        "sacct": {"status": led.sacct_status, "used": led.sacct_used,
                  "rows": len(led.slurm_entries),
                  "gpu_s": sum(e.gpu_s for e in led.slurm_entries),
                  "ignored_rows": len(led.ignored_rows)},
        "gpu_s": led.gpu_s, "gpu_h": led.gpu_s / 3600,
        "arms": {g.name: _group_json(g) for g in [comp.separate_rl, comp.merges, comp.separate, comp.mixed,
                                                   comp.opd, comp.opd_teachers, comp.base] + comp.others},
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
                     "attempts": len(t.run.attempts), "entries": len(t.entries), "interruptions": t.interruptions,
                     "lost_work_s": t.lost_work_s, "lost_gpu_s": t.lost_gpu_s, "queued_s": t.queued_s,
                     "resume_overhead_gpu_s": t.resume_overhead_gpu_s, "finished": t.run.finished,
                     "notes": t.notes} for k, t in sorted(led.runs.items())},
        "evals": [{"label": r.label, "model_run": r.model_run, "arm": r.arm, "scores": r.scores,
                   "cost_gpu_s": r.cost_gpu_s} for r in results],
        "problems": [{"path": p.path, "kind": p.kind, "message": p.message} for p in problems],
        "notes": led.notes,
    }
