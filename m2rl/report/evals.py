"""Eval results, the format the eval job (m2rl/jobs/eval) writes and the report reads.

One file per evaluated model, `<paths.root>/<experiment>/eval/<model slug>/results.json`
(`grpo/math` -> `eval/grpo-math/`; any `<stage>/<run>/results.json` of the experiment is
read). Scores are percent; `truncation_rate` is a fraction:

    {
      "model_run": "grpo/math",   # "<stage>/<run>" of this experiment; null for the base model,
                                  #   a model dir outside the experiment or a hub id
      "model": "/abs/.../grpo/math/export",  # what was evaluated: a dir or a hub id
      "label": "grpo/math",       # display name; "base" for the base model (default: model_run)
      "arm": "separate",          # base | separate | mixed | opd | outside (sft runs: base;
                                  #   merge runs: separate; grpo domain=multi: mixed)
                                  #   (default: the arm of model_run)
      "stage": "grpo",            # the evaluated run's stage: sft, grpo, merge, opd; null for
                                  #   base/outside (default: model_run's)
      "benchmarks": {
        "aime24": {
          "score": 12.5,          # what the report shows: Avg@K
          "avg_at_k": 12.5, "avg_at_k_stderr": 3.1,  # mean reward over the K samples, its s.e.
          "k": 16,                # samples per prompt
          "n_prompts": 30, "n_samples": 480,
          "pass_at_k": {"1": 12.5, "2": 20.0, "4": 30.1, "8": 38.0, "16": 45.0},
          "pass_at_k_stderr": {"1": 3.1, ...},
          "mean_length": 812.4,   # tokens per response
          "truncation_rate": 0.02  # fraction of responses cut at max_tokens
        },
        "math500": 71.2           # older files: a bare score per benchmark
      },
      "sampling": {"aime24": {"n": 16, "temperature": 1.0, "top_p": 0.7, "max_tokens": 32768}},
      "eval_run": "eval/all"      # the eval run that wrote it
    }

Only `benchmarks` and a score per benchmark are required; the rest is shown where given
(K: `k`, else `sampling.<benchmark>.n`); other keys (e.g. the eval's `fingerprints`) are
not read.

The rows of the accuracy table, in the study's order (`order`): the base model, SFT
(stage sft), the single-domain RL runs (arm separate, in the order of m2rl.config.DOMAINS),
the merges (stage merge), MT-OPD (arm opd), multi-task RL (arm mixed), then anything else.

The cost of a model is the RL GPU time it took beyond the shared SFT base: its own run;
for a merged model the merge job plus the RL runs it merged (its config's `merge.models`:
`auto` = `grpo/<d>` for each of `merge.domains`; a `{name: dir}` map or a list of dirs,
each matched to the run whose directory or export it is); for MT-OPD the distillation
run plus its teachers (`opd.teachers`, else every single-domain RL run); 0 for the base
model. An input that is not a run of this experiment is named in the cost note. Eval runs
(stage eval) cost GPU time of their own, counted in no model's cost and no arm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from m2rl.config import DOMAINS
from m2rl.ledger import Ledger, Problem


@dataclass
class Bench:
    """One benchmark's result for one model (all but `score` optional: older files)."""
    score: float
    k: int | None = None
    stderr: float | None = None
    pass_at_k: dict[str, float] = field(default_factory=dict)
    n_prompts: int | None = None
    mean_length: float | None = None
    truncation_rate: float | None = None

    @property
    def pass_at_max_k(self) -> tuple[str, float] | None:
        """pass@K at the largest k given."""
        ks = sorted(self.pass_at_k, key=lambda k: int(k) if k.isdigit() else 0)
        return (ks[-1], self.pass_at_k[ks[-1]]) if ks else None


@dataclass
class EvalResult:
    label: str
    model_run: str | None
    arm: str
    benches: dict[str, Bench]
    path: Path
    stage: str | None = None
    domain: str | None = None
    cost_gpu_s: float | None = None
    cost_note: str = ""

    @property
    def scores(self) -> dict[str, float]:
        return {b: x.score for b, x in self.benches.items()}

    @property
    def avg(self) -> float:
        """Mean score over the benchmarks this model has."""
        return math.fsum(self.scores.values()) / len(self.benches)


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _int(v) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _bench(v, sampling) -> Bench | None:
    if not isinstance(v, dict):
        return None if (s := _num(v)) is None else Bench(s)
    if (s := _num(v.get("score"))) is None:
        return None
    samp = sampling if isinstance(sampling, dict) else {}
    pk = v.get("pass_at_k") if isinstance(v.get("pass_at_k"), dict) else {}
    return Bench(s, k=_int(v.get("k")) or _int(samp.get("n")), stderr=_num(v.get("avg_at_k_stderr")),
                 pass_at_k={str(k): x for k, p in pk.items() if (x := _num(p)) is not None},
                 n_prompts=_int(v.get("n_prompts")), mean_length=_num(v.get("mean_length")),
                 truncation_rate=_num(v.get("truncation_rate")))


def benchmarks(results: list[EvalResult]) -> list[str]:
    """Every benchmark of the results, in the order they first appear (the eval's order)."""
    return list(dict.fromkeys(b for r in results for b in r.benches))


def order(r: EvalResult) -> tuple:
    """The study's row order: base, SFT, single-domain RL, merges, MT-OPD, multi-task RL, others."""
    if r.stage == "sft":
        group = 1
    elif r.arm == "base":
        group = 0
    elif r.stage == "merge":
        group = 3
    else:
        group = {"separate": 2, "opd": 4, "mixed": 5}.get(r.arm, 6)
    dom = DOMAINS.index(r.domain) if r.domain in DOMAINS else len(DOMAINS)
    return group, dom, r.label


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
        sampling = data.get("sampling") if isinstance(data.get("sampling"), dict) else {}
        benches = {str(k): b for k, v in bench.items() if (b := _bench(v, sampling.get(k))) is not None}
        bad = [str(k) for k in bench if str(k) not in benches]
        if bad:
            problems.append(Problem(str(path / "results.json"), "invalid",
                                    f"benchmark score(s) not a number, skipped: {', '.join(bad)}"))
        if not benches:
            continue
        model_run = data["model_run"] if "model_run" in data else data.get("model")
        model_run = str(model_run) if model_run else None
        run = ledger.runs[model_run].run if model_run in ledger.runs else None
        arm = str(data.get("arm") or (run.arm if run else "unknown"))
        stage = data.get("stage") or (run.stage if run else None) or (
            model_run.split("/")[0] if model_run and model_run.count("/") == 1 else None)
        stage = str(stage) if stage else None
        domain = run.domain if run else (model_run.split("/")[-1] if model_run else None)
        r = EvalResult(label=str(data.get("label") or model_run or path.name), model_run=model_run, arm=arm,
                       benches=benches, path=path, stage=stage, domain=domain)
        if arm == "base" and run is None:
            r.cost_gpu_s, r.cost_note = 0.0, "the shared base model (its cost is outside every arm)"
        elif model_run:
            r.cost_gpu_s, r.cost_note = model_cost(ledger, model_run)
        else:
            r.cost_note = f"not a run of this experiment ({data.get('model') or 'no model_run in results.json'})"
        out.append(r)
    return sorted(out, key=order)
