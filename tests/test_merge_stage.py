"""`python -m m2rl.launch stage=merge`: the config section, its checks, the study's
default layout of inputs, and the run dir it writes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO, launch
from m2rl import jobs
from m2rl.errors import ConfigError
from m2rl.jobs.merge import RECORD_NAME
from m2rl.jobs.merge.synthetic import build_base, derive_task_model

jobs.register()
DOMAINS = ["math", "code", "science", "if"]


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("config", overrides=["stage=merge", *overrides])


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """<root>/exp/sft/multi/export and <root>/exp/grpo/<domain>/export, as the pipeline leaves them."""
    root = tmp_path_factory.mktemp("runs")
    base = build_base(root / "exp" / "sft" / "multi" / "export", "qwen3", vocab_size=256, hidden=64)
    for i, d in enumerate(DOMAINS):
        derive_task_model(base, root / "exp" / "grpo" / d / "export", seed=i + 1, scale=0.05)
    return root


def test_defaults_compose_into_the_study_layout():
    cfg = _cfg("merge.method=dare_ties")
    assert cfg.stage.name == "merge" and cfg.run.name == "dare_ties"
    assert (cfg.merge.semantics, cfg.merge.base, cfg.merge.models) == ("paper", "auto", "auto")
    assert list(cfg.merge.domains) == DOMAINS
    jobs.validate(cfg, check_cluster=False)  # auto inputs that do not exist yet are fine before submission


@pytest.mark.parametrize("overrides, field, fix", [
    (["merge.method=slerp"], "merge.method", "use one of average, task_arithmetic, ties"),
    (["merge.semantics=arcee"], "merge.semantics", "merge.semantics=paper"),
    (["merge.density=0"], "merge.density", "merge.density=0.2"),
    (["merge.drop_p=1.0"], "merge.drop_p", "merge.drop_p=0.2"),
    (["merge.select_topk=1.5"], "merge.select_topk", "(off)"),
    (["merge.normalize=true"], "merge.normalize", "merge.semantics=mergekit"),
    (["merge.method=sce", "merge.weights=[1,2,3,4]"], "merge.weights", "drop merge.weights"),
    (["merge.weights=[1,2]"], "merge.weights", "one weight per model"),
    (["merge.weights={math:1,chem:2}"], "merge.weights", "use the model names"),
    (["merge.models=[/nowhere/a]"], "merge.models.a", "HF model dir"),
    (["merge.dtype=int8"], "merge.dtype", "bfloat16"),
    (["merge.threads=0"], "merge.threads", "merge.threads=2"),
])
def test_bad_values_name_the_field_and_the_fix(overrides, field, fix):
    with pytest.raises(ConfigError) as err:
        jobs.validate(_cfg(*overrides), check_cluster=False)
    assert err.value.field == field and fix in err.value.fix, str(err.value)


def test_mismatched_inputs_are_refused_before_submission(layout, tmp_path):
    other = build_base(tmp_path / "llama", "llama", vocab_size=256, hidden=64)
    exp = layout / "exp"
    cfg = _cfg(f"merge.base={exp / 'sft/multi/export'}", f"merge.models=[{exp / 'grpo/math/export'},{other}]")
    with pytest.raises(ConfigError, match="another architecture") as err:
        jobs.validate(cfg, check_cluster=False)
    assert err.value.field == "merge.models.llama"


def test_launch_merges_the_default_layout_into_the_run_dir(layout):
    args = [f"paths.root={layout}", "experiment.name=exp", "stage=merge", "merge.method=ties",
            "merge.semantics=mergekit", "merge.weights={math:2}"]
    launch(*args, cwd=layout)
    run = layout / "exp" / "merge" / "ties"
    done = json.loads((run / "DONE.json").read_text())
    assert done["export"] == str(run / "export") and done["method"] == "ties"
    record = json.loads((run / "export" / RECORD_NAME).read_text())
    assert record["recipe"]["weights"] == {"math": 2.0, "code": 1.0, "science": 1.0, "if": 1.0}
    assert record["base"]["path"] == str(layout / "exp" / "sft" / "multi" / "export")
    assert (run / "export" / "config.json").is_file() and (run / "export" / "tokenizer.json").is_file()
    # relaunching a finished merge does nothing
    stamp = (run / "export" / "model.safetensors").stat().st_mtime_ns
    proc = launch(*args, cwd=layout)
    assert "finished already" in proc.stderr
    assert (run / "export" / "model.safetensors").stat().st_mtime_ns == stamp


def test_launch_without_inputs_says_which_are_missing(tmp_path):
    proc = launch(f"paths.root={tmp_path}", "stage=merge", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "input dir(s) not found" in proc.stderr and "Traceback" not in proc.stderr
    assert str(Path(tmp_path) / "default" / "sft" / "multi" / "export") in proc.stderr
    assert not (tmp_path / "default" / "merge" / "ties" / "export").exists()
