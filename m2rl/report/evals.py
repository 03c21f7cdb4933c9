"""Eval results, the format the eval job writes and the report reads.

One file per evaluated model: `<paths.root>/<experiment>/eval/<run_name>/results.json`
(any `<stage>/<run>/results.json` of the experiment is read):

    {
      "model_run": "grpo/math",         # the evaluated run, "<stage>/<run_name>" in this experiment
      "label": "RL-Math",               # optional display name (default: model_run)
      "arm": "separate",                # optional (default: the arm of model_run)
      "benchmarks": {                   # score per benchmark, in percent (Avg@K)
        "aime24": 71.51,
        "ifeval_strict": {"score": 88.17, "n": 1}   # a score, or an object with "score"
      }
    }

The cost of a model is the RL GPU time it took beyond the shared SFT base: its own run;
for a merged model the merge job plus the RL runs it merged (its config's `merge.models`:
`auto` = `grpo/<d>` for each of `merge.domains`; a `{name: dir}` map or a list of dirs,
each matched to the run whose directory or export it is); for MT-OPD the distillation
run plus its teachers (`opd.teachers`, else every single-domain RL run); 0 for the base
model. An input that is not a run of this experiment is named in the cost note.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from m2rl.ledger import Ledger, Problem


@dataclass
class EvalResult:
    label: str
    model_run: str | None
    arm: str
    scores: dict[str, float]
    path: Path
    cost_gpu_s: float | None = None
    cost_note: str = ""


def _score(v) -> float | None:
    if isinstance(v, dict):
        v = v.get("score")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def separate_rl_keys(ledger: Ledger) -> list[str]:
    return [k for k, t in ledger.runs.items() if t.run.arm == "separate" and t.run.stage != "merge"]


def _listed(ledger: Ledger, key: str, section: str, field: str) -> list[str] | None:
    sec = (ledger.runs[key].run.config or {}).get(section) or {}
    names = sec.get(field) if isinstance(sec, dict) else None
    if not isinstance(names, list):
        return None
    keys = [n if n in ledger.runs else f"grpo/{n}" for n in map(str, names)]
    return [k for k in keys if k in ledger.runs]


def _run_of_dir(ledger: Ledger, d: str) -> str | None:
    """The run whose directory (or its export/) is `d`, or, for an experiment copied or
    moved since, the run at the same `<stage>/<run>` inside it."""
    p = Path(d)
    if p.name == "export":
        p = p.parent
    for k, t in ledger.runs.items():
        if p == t.run.path or p.resolve() == t.run.path.resolve():
            return k
    key = "/".join(p.parts[-2:])
    return key if key in ledger.runs else None


def merge_inputs(ledger: Ledger, key: str) -> tuple[list[str], list[str]]:
    """(runs of this experiment a merge job merged, inputs that are not), from the keys
    MergeConfig has (`models`, `domains`)."""
    sec = (ledger.runs[key].run.config or {}).get("merge") or {}
    models = sec.get("models", "auto")
    if models in (None, "auto"):
        names = [f"grpo/{d}" for d in (sec.get("domains") or [])]
        return [n for n in names if n in ledger.runs], [n for n in names if n not in ledger.runs]
    found, outside = [], []
    items = models.items() if isinstance(models, dict) else [(None, m) for m in models]
    for name, d in items:
        k = _run_of_dir(ledger, str(d))
        if k is None and name is not None and f"grpo/{name}" in ledger.runs:
            k = f"grpo/{name}"
        (found.append(k) if k else outside.append(str(d)))
    return found, outside


def model_cost(ledger: Ledger, key: str) -> tuple[float | None, str]:
    """RL GPU-seconds that produced the model of run `key`, and how they were summed."""
    if key not in ledger.runs:
        return None, f"{key} is not a run of this experiment"
    run = ledger.runs[key].run
    own = ledger.runs[key].gpu_s
    if run.arm == "base":
        return 0.0, "the shared base model (its cost is outside every arm)"
    if run.stage == "merge":
        src, outside = merge_inputs(ledger, key)
        note = f"merge + {len(src)} RL run(s) ({', '.join(src)})"
        if outside:
            note += f"; not runs of this experiment, not counted: {', '.join(outside)}"
        return own + sum(ledger.runs[k].gpu_s for k in src), note
    if run.arm == "opd":
        src = _listed(ledger, key, "opd", "teachers") or separate_rl_keys(ledger)
        return own + sum(ledger.runs[k].gpu_s for k in src), f"MT-OPD + {len(src)} teacher run(s)"
    return own, "its own run"


def load(ledger: Ledger, problems: list[Problem]) -> list[EvalResult]:
    out = []
    for path, data in ledger.scan.results:
        bench = data.get("benchmarks")
        if not isinstance(bench, dict) or not bench:
            problems.append(Problem(str(path / "results.json"), "invalid",
                                    "eval results without a 'benchmarks' object of scores; skipped"))
            continue
        scores = {str(k): s for k, v in bench.items() if (s := _score(v)) is not None}
        bad = [str(k) for k, v in bench.items() if _score(v) is None]
        if bad:
            problems.append(Problem(str(path / "results.json"), "invalid",
                                    f"benchmark score(s) not a number, skipped: {', '.join(bad)}"))
        if not scores:
            continue
        model_run = data.get("model_run") or data.get("model")
        model_run = str(model_run) if model_run else None
        arm = data.get("arm") or (ledger.runs[model_run].run.arm if model_run in ledger.runs else "unknown")
        r = EvalResult(label=str(data.get("label") or model_run or path.name), model_run=model_run, arm=str(arm),
                       scores=scores, path=path)
        if arm == "base" and model_run not in ledger.runs:
            r.cost_gpu_s, r.cost_note = 0.0, "the shared base model (its cost is outside every arm)"
        elif model_run:
            r.cost_gpu_s, r.cost_note = model_cost(ledger, model_run)
        else:
            r.cost_note = "no model_run in results.json"
        out.append(r)
    order = {"base": 0, "separate": 1, "mixed": 2, "opd": 3}
    return sorted(out, key=lambda r: (order.get(r.arm, 9), r.label))
