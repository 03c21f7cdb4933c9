"""The report's accuracy section: the study's table of eval results (m2rl.report.evals)
beside each model's cost, the merge methods side by side, and each benchmark's details."""
from __future__ import annotations

from . import compare, evals
from .evals import EvalResult
from .fmt import MAX_ROWS, fmt_h, fmt_num, rel
from .render import Doc


def marked(values: list[float | None]) -> list[str]:
    """One column's cells: the best value **bold** (when 2+ models have one), the second
    best <u>underlined</u> (when 3+ do); ranks by the value as shown (2 decimals)."""
    shown = [None if v is None else round(v, 2) for v in values]
    present = [v for v in shown if v is not None]
    ranks = sorted(set(present), reverse=True)
    cells = []
    for v in shown:
        s = "" if v is None else f"{v:.2f}"
        if v is not None and len(present) >= 2 and v == ranks[0]:
            s = f"**{s}**"
        elif v is not None and len(present) >= 3 and len(ranks) > 1 and v == ranks[1]:
            s = f"<u>{s}</u>"
        cells.append(s)
    return cells


def score_columns(results: list[EvalResult], benches: list[str]) -> list[list[str]]:
    """Per model: its marked score on each benchmark, then its average (ranked only among
    the models that have every benchmark; the others say over how many)."""
    cols = [marked([r.scores.get(b) for r in results]) for b in benches]
    full = [set(benches) <= set(r.benches) for r in results]
    avg = marked([r.avg if f else None for r, f in zip(results, full)])
    avg = [a or f"{r.avg:.2f} ({len(set(benches) & set(r.benches))}/{len(benches)})" for r, a in zip(results, avg)]
    return [[c[i] for c in cols] + [avg[i]] for i in range(len(results))]


def k_notes(results: list[EvalResult], benches: list[str]) -> list[str]:
    """Where a benchmark's K (samples per prompt) differs between models."""
    notes = []
    for b in benches:
        by_k: dict[int, list[str]] = {}
        for r in results:
            if b in r.benches and r.benches[b].k is not None:
                by_k.setdefault(r.benches[b].k, []).append(r.label)
        if len(by_k) > 1:
            notes.append(f"{b}: K differs between models: " + "; ".join(
                f"K={k} for {', '.join(labels)}" for k, labels in sorted(by_k.items(), reverse=True)))
    return notes


def accuracy_section(doc: Doc, results: list[EvalResult], comp: compare.Comparison, files, out, U: str) -> None:
    if not results:
        return
    doc.h(1, "Accuracy")
    benches = evals.benchmarks(results)
    rows = [[r.label, r.arm, fmt_h(r.cost_gpu_s)] + cells for r, cells in zip(results, score_columns(results, benches))]
    doc.table(["model", "arm", f"RL {U} hours"] + benches + ["Avg"], rows, align="llr" + "r" * (len(benches) + 1),
              caption=f"Avg@K in percent; **best**, <u>second best</u> per column. Avg = mean over the benchmarks; "
              f"(n/N): the model has n of the N, not ranked. RL {U} hours = what it took to produce the model beyond "
              "the shared base: merged models include the single-domain runs they merge, MT-OPD its teachers.")
    notes = k_notes(results, benches)
    if comp.evals.runs:
        notes.append(f"Evaluation cost {fmt_h(comp.evals.gpu_s)} {U}-hours ({len(comp.evals.runs)} eval run(s)), "
                     "counted in no model's cost and no arm.")
    doc.items(notes + [f"{r.label}: {r.cost_note} (`{r.path}`)" for r in results])
    if (p := rel(files, "cost_vs_accuracy", out)):
        doc.img(*p, "average accuracy vs RL cost")
    merge_section(doc, [r for r in results if r.stage == "merge"], benches)
    details_section(doc, results, benches)


def merge_section(doc: Doc, merges: list[EvalResult], benches: list[str]) -> None:
    if not merges:
        return
    doc.h(2, "Merge methods")
    benches = [b for b in benches if any(b in r.benches for r in merges)]
    rows = [[r.label] + cells for r, cells in zip(merges, score_columns(merges, benches))]
    doc.table(["merge"] + benches + ["Avg"], rows,
              caption="Avg@K in percent; **best**, <u>second best</u> per column among the merges.")


def details_section(doc: Doc, results: list[EvalResult], benches: list[str]) -> None:
    rows = []
    for b in benches:
        for r in results:
            x = r.benches.get(b)
            if x is None or (x.k is None and x.stderr is None):
                continue
            pk = x.pass_at_max_k
            se = "" if x.stderr is None else f" ± {x.stderr:.2f}"
            rows.append([b, r.label, fmt_num(x.k), f"{x.score:.2f}{se}", f"{pk[1]:.2f} (k={pk[0]})" if pk else "",
                         fmt_num(x.n_prompts), fmt_num(x.mean_length),
                         "" if x.truncation_rate is None else f"{x.truncation_rate:.1%}"])
    if not rows:
        return
    doc.h(2, "Per benchmark")
    doc.table(["benchmark", "model", "K", "Avg@K ± s.e.", "pass@K", "prompts", "mean length", "truncated"],
              rows[:MAX_ROWS], align="llrrrrrr",
              caption="K samples per prompt; s.e. = standard error over prompts; pass@K at the largest k evaluated; "
              "mean length in tokens; truncated = responses cut at max_tokens."
              + (f" First {MAX_ROWS} of {len(rows)} rows." if len(rows) > MAX_ROWS else ""))
