"""The report's accuracy section on an experiment laid out as the pipeline leaves it: run
dirs with the runtime's config.yaml and attempt records, and results.json in the eval
job's format (m2rl/report/evals.py): the study's row order, best and second best marked,
averages, the merge methods, K that differs, the plot, and eval cost on a line of its own."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

from m2rl import jobs
from m2rl.eval import summarize
from m2rl.report import generate
from m2rl.report.accuracy import marked
from m2rl.runtime import attempts, rundir

REPO = Path(__file__).resolve().parents[1]
T0 = 1767225600.0
BENCHES = ("aime24", "math500", "ifeval")
# (stage, run, overrides, GPUs, seconds): local-executor runs, counted as GPUs x wall time
RUNS = [("sft", "multi", ["domain=multi"], 8, 1000), ("grpo", "math", ["domain=math"], 8, 3600),
        ("grpo", "code", ["domain=code"], 8, 5400), ("grpo", "multi", ["domain=multi"], 8, 4500),
        *[("merge", m, [f"merge.method={m}", "merge.domains=[math,code]"], 0, 600)
          for m in ("ties", "average", "dare_ties")],
        ("eval", "all", [], 8, 1800)]
# label -> (model_run, arm, stage, {benchmark: (percent correct, K)}), written in shuffled order
SCORES = {"grpo/multi": ("grpo/multi", "mixed", "grpo", {"aime24": (50, 16), "math500": (75, 4), "ifeval": (75, 4)}),
          "merge/average": ("merge/average", "separate", "merge",
                            {"aime24": (35, 16), "math500": (65, 4), "ifeval": (70, 4)}),
          "base": (None, "base", None, {"aime24": (10, 16), "math500": (40, 4), "ifeval": (50, 4)}),
          "grpo/code": ("grpo/code", "separate", "grpo", {"aime24": (25, 8), "math500": (55, 4), "ifeval": (45, 4)}),
          "sft/multi": ("sft/multi", "base", "sft", {"aime24": (20, 16), "math500": (50, 4), "ifeval": (60, 4)}),
          "merge/ties": ("merge/ties", "separate", "merge",
                         {"aime24": (40, 16), "math500": (70, 4), "ifeval": (65, 4)}),
          "grpo/math": ("grpo/math", "separate", "grpo", {"aime24": (45, 16), "math500": (80, 4), "ifeval": (55, 4)})}
OLD_FORMAT = {"model_run": "merge/dare_ties", "benchmarks": {"aime24": 38.0, "math500": 72.0, "ifeval": 61.0}}
ORDER = ["base", "sft/multi", "grpo/math", "grpo/code", "merge/average", "merge/dare_ties", "merge/ties", "grpo/multi"]
N_PROMPTS = 5


def _run(root: Path, stage: str, run: str, overrides: list[str], gpus: int, seconds: float, mp) -> None:
    """A finished run as its job leaves it: config.yaml, one attempt record, DONE.json."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"stage={stage}", f"run.name={run}", f"paths.root={root}",
                                           "experiment.name=acc", f"cluster.gpus_per_node={gpus}", *overrides])
    rd = rundir.run_dir(cfg)
    rd.mkdir(parents=True)
    rundir.save_config(cfg, rd)
    mp.setattr(attempts, "time", SimpleNamespace(time=lambda: T0, time_ns=time.time_ns))
    rec = attempts.AttemptRecorder(rd)
    rec.start(rundir.identity(cfg), "local", gpus, job_id="100", start_time=T0)
    mp.setattr(attempts, "time", SimpleNamespace(time=lambda: T0 + seconds, time_ns=time.time_ns))
    steps = 10 if stage in ("sft", "grpo") else 0
    rec.finish("completed", "finished", steps)
    if stage != "eval":
        rundir.mark_done(rd, {"step": steps})


def _bench(pct: int, k: int) -> dict:
    """One benchmark's entry as the eval job computes it (m2rl.eval.summarize, in percent)."""
    n_right = round(pct / 100 * N_PROMPTS * k)
    rewards = [[float(i * k + j < n_right) for j in range(k)] for i in range(N_PROMPTS)]
    m = summarize(rewards, [[100.0 + 10 * j for j in range(k)] for _ in rewards],
                  [[j == k - 1 for j in range(k)] for _ in rewards])
    for key in ("avg_at_k", "avg_at_k_stderr"):
        m[key] *= 100
    for key in ("pass_at_k", "pass_at_k_stderr"):
        m[key] = {kk: 100 * v for kk, v in m[key].items()}
    return {"score": m["avg_at_k"], **m}


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    jobs.register()
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("SLURM_")]:
            mp.delenv(k)
        for stage, run, over, gpus, seconds in RUNS:
            _run(root, stage, run, over, gpus, seconds, mp)
    e = root / "acc"
    for label, (model_run, arm, stage, scores) in SCORES.items():
        res = {"model_run": model_run, "model": str(e / model_run / "export") if model_run else "Qwen/Qwen3-4B-Base",
               "label": label, "arm": arm, "stage": stage,
               "benchmarks": {b: _bench(*scores[b]) for b in BENCHES},
               "sampling": {b: {"n": scores[b][1], "temperature": 1.0, "top_p": 0.7, "max_tokens": 32768}
                            for b in BENCHES},
               "eval_run": "eval/all"}
        out = e / "eval" / label.replace("/", "-")  # the eval job's dir per model: grpo/math -> grpo-math
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(res))
    (e / "eval" / "merge-dare_ties").mkdir()
    (e / "eval" / "merge-dare_ties" / "results.json").write_text(json.dumps(OLD_FORMAT))
    return e


@pytest.fixture(scope="module")
def report(exp, tmp_path_factory):
    return generate(exp, tmp_path_factory.mktemp("out"), "off")


def _scores(exp: Path) -> dict[str, dict[str, float]]:
    """What the results files say, read back (the expectations are computed from them)."""
    out = {}
    for p in exp.glob("eval/*/results.json"):
        d = json.loads(p.read_text())
        out[d.get("label") or d["model_run"]] = {b: v["score"] if isinstance(v, dict) else v
                                                 for b, v in d["benchmarks"].items()}
    return out


def _table(md: str, heading: str) -> list[list[str]]:
    sec = md[md.index(heading):]
    lines = [ln for ln in sec.split("\n\n", 2)[1].splitlines()]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


def _expected(values: list[float]) -> list[str]:
    """Independently of the code: bold the largest, underline the next one down."""
    top = sorted(set(round(v, 2) for v in values), reverse=True)
    return [f"**{v:.2f}**" if round(v, 2) == top[0] else f"<u>{v:.2f}</u>" if round(v, 2) == top[1] else f"{v:.2f}"
            for v in values]


def test_rows_in_the_study_order_with_best_and_second_marked(exp, report):
    scores = _scores(exp)
    rows = _table(report.markdown.read_text(), "## Accuracy")
    assert [r[0] for r in rows] == ORDER
    assert [r[1] for r in rows] == ["base", "base", "separate", "separate", "separate", "separate", "separate",
                                    "mixed"]
    for i, b in enumerate(BENCHES):
        assert [r[3 + i] for r in rows] == _expected([scores[m][b] for m in ORDER]), b
    avgs = [sum(scores[m].values()) / 3 for m in ORDER]
    assert [r[6] for r in rows] == _expected(avgs)
    assert rows[-1][6] == "**66.67**" and rows[2][6] == "<u>60.00</u>"  # grpo/multi, grpo/math
    by_label = {e["label"]: e for e in report.summary["evals"]}
    assert by_label["grpo/multi"]["avg"] == pytest.approx(200 / 3)
    assert by_label["merge/dare_ties"]["k"] == {b: None for b in BENCHES}  # the old format loads


def test_merge_methods_table(exp, report):
    scores = _scores(exp)
    rows = _table(report.markdown.read_text(), "### Merge methods")
    merges = ["merge/average", "merge/dare_ties", "merge/ties"]
    assert [r[0] for r in rows] == merges
    for i, b in enumerate(BENCHES):
        assert [r[1 + i] for r in rows] == _expected([scores[m][b] for m in merges]), b
    assert [r[4] for r in rows] == _expected([sum(scores[m].values()) / 3 for m in merges])
    assert [r[4] for r in rows] == ["56.67", "<u>57.00</u>", "**58.33**"]


def test_k_that_differs_and_the_details(exp, report):
    md = report.markdown.read_text()
    notes = [ln for ln in md.splitlines() if "K differs" in ln]
    assert len(notes) == 1 and notes[0].startswith("- aime24: K differs")
    assert "K=8 for grpo/code" in notes[0] and "K=16 for base, sft/multi, grpo/math, merge/average" in notes[0]
    math = json.loads((exp / "eval" / "grpo-math" / "results.json").read_text())["benchmarks"]["aime24"]
    row = next(r for r in _table(md, "### Per benchmark") if r[:2] == ["aime24", "grpo/math"])
    assert row == ["aime24", "grpo/math", "16", f"45.00 ± {math['avg_at_k_stderr']:.2f}",
                   f"{math['pass_at_k']['16']:.2f} (k=16)", "5", "175", "6.2%"]
    assert not any(r[1] == "merge/dare_ties" for r in _table(md, "### Per benchmark"))  # no K in old files


def test_plot_is_drawn_and_embedded(report):
    png = report.files["cost_vs_accuracy"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(plots/cost_vs_accuracy.png)" in report.markdown.read_text()
    html = report.files["html"].read_text()
    assert '<img alt="average accuracy vs RL cost" src="data:image/png;base64,' in html
    assert "<strong>66.67</strong>" in html and "<u>60.00</u>" in html and "&lt;u&gt;" not in html


def test_eval_cost_is_its_own_line_and_in_no_arm(report):
    s = report.summary
    assert s["arms"]["eval"]["gpu_s"] == pytest.approx(8 * 1800) and s["arms"]["eval"]["runs"] == ["eval/all"]
    assert s["arms"]["separate"]["gpu_s"] == pytest.approx(8 * (3600 + 5400))
    assert s["arms"]["mixed"]["gpu_s"] == pytest.approx(8 * 4500) and s["arms"]["base"]["gpu_s"] == 8000
    assert s["ratios"]["mixed_over_separate_rl"] == pytest.approx(0.5)
    assert not any("eval/all" in g["runs"] for name, g in s["arms"].items() if name != "eval")
    evals = {e["label"]: e for e in s["evals"]}
    assert evals["grpo/math"]["cost_gpu_s"] == 8 * 3600 and evals["merge/ties"]["cost_gpu_s"] == 8 * 9000
    md = report.markdown.read_text()
    assert re.search(r"^\| eval: benchmark runs, in no arm \| 1 \| 4\.00 \|", md, re.M)
    assert "Evaluation cost 4.00 GPU-hours (1 eval run(s)), counted in no model's cost and no arm." in md


def test_marked_ranks_as_shown():
    assert marked([1.0, None, 3.0, 2.0]) == ["1.00", "", "**3.00**", "<u>2.00</u>"]
    assert marked([5.0, 5.004, 4.0]) == ["**5.00**", "**5.00**", "<u>4.00</u>"]  # tied as shown
    assert marked([1.0, 2.0]) == ["1.00", "**2.00**"]  # two models: no "second best"
    assert marked([7.0, None]) == ["7.00", ""]
