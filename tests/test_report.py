"""`python -m m2rl.report`: the study's published runs reproduce 33.2%, the outputs are
complete and self-contained, bad input gets a clear message."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from m2rl.report import generate
from m2rl.report.__main__ import main

FIX = Path(__file__).parent / "fixtures"
STUDY, STUDY_SACCT = FIX / "study", FIX / "study-sacct.psv"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("study-report")
    return generate(STUDY, out, STUDY_SACCT)


def test_study_fixture_reproduces_the_published_ratio(study_report):
    s = study_report.summary
    assert round(s["ratios"]["mixed_over_separate_rl"] * 100, 1) == 33.2
    assert s["arms"]["separate_rl"]["gpu_h"] == pytest.approx(2172.8 + 3187.2 + 787.2 + 377.6)
    assert s["arms"]["mixed"]["gpu_h"] == pytest.approx(2166.4)
    assert s["arms"]["opd"]["gpu_h"] == pytest.approx(816.0)
    assert s["arms"]["opd_teachers"]["gpu_h"] == pytest.approx(816.0 + 6524.8)
    # normalised: multi-task ran 400 steps of 128 prompts, the separate runs 4 x 200
    assert s["arms"]["separate_rl"]["steps"] == 800 and s["arms"]["mixed"]["steps"] == 400
    assert s["ratios"]["mixed_over_separate_per_step"] == pytest.approx(2166.4 / 400 / (6524.8 / 800))
    assert s["ratios"]["mixed_over_separate_per_prompt"] == pytest.approx(2166.4 / 51200 / (6524.8 / 102400))
    assert s["ratios"]["mixed_over_separate_per_token"] is None  # no generated_tokens published
    md = study_report.markdown.read_text()
    assert "33.2% of the 6524.8 GPU-hours" in md
    for run, hours in (("grpo/math", "2172.8"), ("grpo/code", "3187.2"), ("grpo/science", "787.2"),
                       ("grpo/if", "377.6"), ("grpo/multi", "2166.4"), ("opd/multi", "816.0")):
        batch = "256 | 4" if run.startswith("opd") else "128 | 16"
        assert re.search(rf"\| {re.escape(run)} \| \w+ \| {batch} \| \d+ \| 32 \| {hours} \|", md), run
    assert "| 7340.8 |" in md  # MT-OPD with its teachers
    assert "24.9 min" in md and "| grpo/math | 4101 | 0 | preempted |" in md  # the preempted run
    assert "tensorboard --logdir" in md


def test_outputs_are_complete_and_html_is_self_contained(study_report):
    f = study_report.files
    for name in ("arms", "ratios", "runs", "cost_vs_accuracy"):
        assert f[name].read_bytes()[:8] == PNG and f[name].stat().st_size > 10_000
    html = f["html"].read_text()
    assert html.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # nothing fetched
    assert "<table>" in html and "33.2%" in html
    md = f["md"].read_text()
    for name in ("arms", "ratios", "runs", "cost_vs_accuracy"):
        assert f"(plots/{name}.png)" in md
    assert len(f["csv"].read_text().splitlines()) == 1 + 8
    assert study_report.files["sacct"].read_text() == STUDY_SACCT.read_text()


def test_accuracy_table_and_model_costs(study_report):
    evals = {e["label"]: e for e in study_report.summary["evals"]}
    assert evals["RL-Math"]["scores"] == {"aime24": 71.51}
    assert evals["SFT"]["cost_gpu_s"] == 0
    assert evals["Merged (TIES)"]["cost_gpu_s"] / 3600 == pytest.approx(6524.8)  # merge + the runs it merged
    assert evals["MT-OPD"]["cost_gpu_s"] / 3600 == pytest.approx(7340.8)          # with its teachers
    md = study_report.markdown.read_text()
    assert re.search(r"\| RL-Multi \| mixed \| 2166\.4 \| \*\*73\.85\*\* \|", md)  # the best aime24
    # old-format files (a bare score per benchmark): the Avg says over how many benchmarks
    assert "| SFT | base | 0.0 | 54.90 | 79.48 |  | 67.19 (2/3) |" in md


def test_a_merge_is_charged_the_runs_it_merged(tmp_path):
    """merge.domains / merge.models (MergeConfig's own keys) decide which RL runs a merged
    model's cost includes, not "every single-domain run"."""
    import yaml

    exp = tmp_path / "study"
    shutil.copytree(STUDY, exp)
    cfg_path = exp / "merge" / "ties" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["merge"]["domains"] = ["math", "if"]  # models: auto -> grpo/math, grpo/if
    cfg_path.write_text(yaml.safe_dump(cfg))
    evals = {e["label"]: e for e in generate(exp, tmp_path / "r1", STUDY_SACCT).summary["evals"]}
    assert evals["Merged (TIES)"]["cost_gpu_s"] / 3600 == pytest.approx(2172.8 + 377.6)
    assert "grpo/math, grpo/if" in evals["Merged (TIES)"]["cost_note"]

    # explicit dirs: a {name: dir} map with one run's export and one model from elsewhere
    cfg["merge"]["models"] = {"code": str(exp / "grpo" / "code" / "export"), "other": str(tmp_path / "hf-model")}
    cfg_path.write_text(yaml.safe_dump(cfg))
    evals = {e["label"]: e for e in generate(exp, tmp_path / "r2", STUDY_SACCT).summary["evals"]}
    assert evals["Merged (TIES)"]["cost_gpu_s"] / 3600 == pytest.approx(3187.2)
    assert "not counted: " + str(tmp_path / "hf-model") in evals["Merged (TIES)"]["cost_note"]


def test_per_token_and_measured_prompts(tmp_path):
    exp = tmp_path / "study"
    shutil.copytree(STUDY, exp)
    for run, tokens in (("grpo/math", 4e9), ("grpo/code", 5e9), ("grpo/science", 1e9), ("grpo/if", 1e9),
                        ("grpo/multi", 5e9), ("opd/multi", 1e9)):
        p = exp / run / "DONE.json"
        done = json.loads(p.read_text())
        done.update(generated_tokens=tokens, prompts=done["step"] * 100)
        p.write_text(json.dumps(done))
    s = generate(exp, tmp_path / "out", STUDY_SACCT).summary
    assert s["arms"]["separate_rl"]["prompts_measured"] and s["arms"]["separate_rl"]["prompts"] == 80000
    assert s["ratios"]["mixed_over_separate_per_token"] == pytest.approx((2166.4 / 5e9) / (6524.8 / 11e9))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "batch x steps from the config" not in md


def test_cli_bad_input_messages(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "no experiment directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "holds no runs" in capsys.readouterr().err
    assert main([str(STUDY), "--out", str(tmp_path / "o"), "--sacct-file", str(tmp_path / "nope.psv")]) == 3
    err = capsys.readouterr().err
    assert "cannot read the sacct file" in err and "--no-sacct" in err
    (tmp_path / "garbage.psv").write_text("this is not sacct output\n")
    assert main([str(STUDY), "--out", str(tmp_path / "o"), "--sacct-file", str(tmp_path / "garbage.psv")]) == 3
    assert "lacks the field" in capsys.readouterr().err


def test_cli_reports_corrupt_records_and_the_report_lists_them(tmp_path, capsys):
    exp = tmp_path / "study"
    shutil.copytree(STUDY, exp)
    (exp / "grpo" / "if" / "attempts" / "attempt-0000.json").write_text("{not json")
    (exp / "eval" / "rl-if" / "results.json").write_text('{"model_run": "grpo/if", "benchmarks": {"x": "high"}}')
    assert main([str(exp), "--sacct-file", str(STUDY_SACCT)]) == 0
    out = capsys.readouterr()
    assert "skipped" in out.err and "attempt-0000.json: corrupt" in out.err and "not a number" in out.err
    md = (exp / "report" / "report.md").read_text()
    problems = md.split("## Problems", 1)[1]
    assert "grpo/if/attempts/attempt-0000.json" in problems and "corrupt" in problems
    assert "2 input file(s) could not be used" in md
    # IF's Slurm row is still counted (it names no other attempt: unattributed, not dropped)
    assert "unattributed" in md and json.loads((exp / "report" / "summary.json").read_text())[
        "gpu_s"] == pytest.approx(9507.2 * 3600)


def test_no_sacct_says_so(tmp_path, capsys):
    assert main([str(STUDY), "--out", str(tmp_path), "--no-sacct"]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "sacct was not consulted" in md and "not checked against sacct" in md
    s = json.loads((tmp_path / "summary.json").read_text())
    assert not s["sacct"]["used"] and round(s["ratios"]["mixed_over_separate_rl"] * 100, 1) == 33.2


def test_html_escapes_untrusted_text(tmp_path):
    exp = tmp_path / "study"
    shutil.copytree(STUDY, exp)
    (exp / "eval" / "rl-if" / "results.json").write_text(json.dumps(
        {"model_run": "grpo/if", "label": "<script>alert(1)</script>", "benchmarks": {"ifeval": 88.17}}))
    html = (generate(exp, tmp_path / "out", STUDY_SACCT).files["html"]).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_report_stage_job_writes_the_experiment_report(tmp_path):
    """`stage=report` through the real entry point, after a real inline toy run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    common = [f"paths.root={tmp_path}", "experiment.name=exp"]
    for args in (["stage=toy", "toy.steps=2", "cluster.gpus_per_node=1"], ["stage=report"]):
        subprocess.run([sys.executable, "-m", "m2rl.launch", *args, *common], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=300)
    done = json.loads((tmp_path / "exp" / "report" / "math" / "DONE.json").read_text())
    assert done["report"] == str(tmp_path / "exp" / "report" / "report.md") and done["runs"] == 2
    md = (tmp_path / "exp" / "report" / "report.md").read_text()
    assert "| toy/math | toy |" in md and "| report/math | report |" in md
    assert "n/a (no Slurm record)" in md  # no queue time under the local/inline executor


def test_runs_without_a_learning_signal_are_flagged(tmp_path):
    from m2rl.rl.signal import SignalWatch

    exp = tmp_path / "study"
    shutil.copytree(STUDY, exp)
    for run, zero_fracs, errors in (("grpo/math", [1.0] * 6, 0), ("grpo/code", [0.5, 1.0, 0.75, 1.0, 0.5, 0.2], 3)):
        watch = SignalWatch(warn_after=5)  # what the GRPO job writes into DONE.json
        for step, frac in enumerate(zero_fracs, 1):
            watch.observe(step, run, frac, [("code", "s1", "verifier timeout")] * (errors if step == 1 else 0), 64)
        p = exp / run / "DONE.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), "learning_signal": watch.summary()}))
    rep = generate(exp, tmp_path / "out", STUDY_SACCT)
    md = (tmp_path / "out" / "report.md").read_text()
    sec = md[md.index("Learning signal"):]
    assert "grpo/math: long runs of steps" in sec and "grpo/code:" not in sec.split("|")[0]
    math_row = next(ln for ln in sec.splitlines() if ln.startswith("| grpo/math"))
    code_row = next(ln for ln in sec.splitlines() if ln.startswith("| grpo/code"))
    assert "6 (100%)" in math_row and "| 6 |" in math_row
    assert "2 (33%)" in code_row and "0.8%" in code_row  # 3 failures of 384 completions
    assert rep.summary["runs"]["grpo/math"]["learning_signal"]["longest_zero_streak"] == 6
