"""stage=eval through the launcher: bad input refused before submission; two models of one
architecture in one job (one engine start, the second loaded into it, the same samples as
its own fresh engine gives); results.json and samples.jsonl.gz consistent with each other
and with a brute-force pass@k; the report renders them; an eval preempted on the real
Slurm cluster keeps its finished shards and redoes only the rest."""
from __future__ import annotations

import gzip
import json
import math
import shutil
from itertools import combinations
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO, attempts, launch, launch_and_interrupt
from deps import requires

# heldout_if greedy: the same weights give the same tokens, whichever engine they went into
# (sampled tokens of a near-uniform tiny model flip on float noise of another load path)
SMALL = ["eval.benchmarks=[heldout_math,heldout_if]", "eval.limit=6", "eval.samples=3", "eval.max_tokens=24",
         "eval.shard_prompts=4", "eval.batch_prompts=4", "eval.sampling={heldout_if: {temperature: 0.0, n: 1}}"]


def tiny_model_dir() -> Path:
    from m2rl.models import ModelConfig, prepare_model
    from m2rl.sections import as_dataclass

    return Path(prepare_model(as_dataclass(ModelConfig, OmegaConf.load(REPO / "configs/model/tiny.yaml"))))


def noisy_copy(dst: Path) -> Path:
    """The tiny model with its layers' matrices moved: the same architecture, other
    responses (the random tiny model's greedy answer echoes the prompt's last token)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model_dir(), dst)
    sd = load_file(dst / "model.safetensors")
    g = torch.Generator().manual_seed(1)
    moved = {k: v + 2.0 * v.std() * torch.randn(v.shape, generator=g) if "layers" in k and v.dim() == 2 else v
             for k, v in sd.items()}
    save_file({k: v.contiguous() for k, v in moved.items()},
              dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress((out / "samples.jsonl.gz").read_bytes()).splitlines()]


@pytest.mark.parametrize("arg,field", [
    ("eval.benchmarks=[aime24,aime26]", "eval.benchmarks"),
    ("eval.model=grpo/nothing", "eval.model"),
    ("eval.sampling={aime24: {n: 2}}", "eval.sampling"),           # aime24 is not in eval.benchmarks
    ("eval.sampling={heldout_math: {top_k: 2}}", "eval.sampling.heldout_math"),
    ("eval.samples=0", "eval.samples"),
    ("eval.temperature=0", "eval.samples"),  # greedy with K=4 (the stage's default K)
    ("cluster.tasks_per_node=2", "cluster.tasks_per_node"),
])
def test_bad_eval_config_is_refused_before_anything_runs(tmp_path, arg, field):
    proc = launch("-m", "stage=eval", f"paths.root={tmp_path}", "eval.benchmarks=[heldout_math]", arg,
                  cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 2 and field in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "default" / "eval").exists() or not list((tmp_path / "default" / "eval").rglob("attempt-*"))


@pytest.mark.vllm
@requires("vllm")
def test_two_models_in_one_job_share_an_engine_and_match_their_own_runs(tmp_path):
    noisy = noisy_copy(tmp_path / "noisy")
    launch("-m", "stage=eval", f"paths.root={tmp_path}", f"eval.model=[base,{noisy}]", *SMALL, cwd=tmp_path)
    ev = tmp_path / "default" / "eval"
    done = json.loads((ev / "base+noisy" / "DONE.json").read_text())
    assert (done["engine_starts"], done["weight_loads"]) == (1, 1), done
    assert attempts(ev / "base+noisy")[-1]["state"] == "completed"
    base, loaded = samples(ev / "base"), samples(ev / "noisy")
    assert [r["id"] for r in base] == [r["id"] for r in loaded]
    assert sum(a["responses"] != b["responses"] for a, b in zip(base, loaded)) >= len(base) // 2  # other weights

    # the same model alone, in an engine of its own: the same samples (the load took)
    launch("-m", "stage=eval", f"paths.root={tmp_path}", "experiment.name=alone", f"eval.model={noisy}", *SMALL,
           cwd=tmp_path)
    alone = tmp_path / "alone" / "eval" / "noisy"
    greedy = [r["responses"] for r in loaded if r["benchmark"] == "heldout_if"]
    assert [r["responses"] for r in samples(alone) if r["benchmark"] == "heldout_if"] == greedy
    assert greedy != [r["responses"] for r in base if r["benchmark"] == "heldout_if"]

    res = json.loads((ev / "noisy" / "results.json").read_text())
    assert res["label"] == str(noisy) and res["model_run"] is None and res["eval_run"] == "eval/base+noisy"
    for name in ("heldout_math", "heldout_if"):
        b, rows = res["benchmarks"][name], [r for r in loaded if r["benchmark"] == name]
        k_ = 3 if name == "heldout_math" else 1
        assert (b["k"], b["n_prompts"], b["n_samples"]) == (k_, 6, 6 * k_)
        flat = [x for r in rows for x in r["rewards"]]
        assert b["score"] == pytest.approx(100 * sum(flat) / len(flat))
        assert b["mean_length"] == pytest.approx(sum(x for r in rows for x in r["lengths"]) / len(flat))
        assert b["truncation_rate"] == pytest.approx(sum(f == "length" for r in rows for f in r["finish"]) / len(flat))
        for k in range(1, k_ + 1):  # brute force: the share of a prompt's k-subsets of samples with a correct one
            per = [sum(any(r["rewards"][i] >= 1.0 for i in sub) for sub in combinations(range(k_), k))
                   / math.comb(k_, k) for r in rows]
            assert b["pass_at_k"][str(k)] == pytest.approx(100 * sum(per) / len(per))
    assert res["sampling"]["heldout_math"] == {"n": 3, "temperature": 1.0, "top_p": 0.7, "max_tokens": 24}
    assert res["sampling"]["heldout_if"]["temperature"] == 0.0

    # relaunching a finished eval submits nothing; the report shows both models' accuracy
    again = launch("-m", "stage=eval", f"paths.root={tmp_path}", f"eval.model=[base,{noisy}]", *SMALL,
                   cwd=tmp_path)
    assert "skip" in (again.stdout + again.stderr).lower()
    import subprocess
    import sys

    rep = subprocess.run([sys.executable, "-m", "m2rl.report", str(tmp_path / "default")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    md = (tmp_path / "default" / "report" / "report.md").read_text()
    assert "heldout_math" in md and "base" in md and str(noisy) in md


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.vllm
@requires("vllm")
def test_eval_preempted_on_slurm_keeps_its_finished_shards(slurm_cluster, tmp_path):
    run = tmp_path / "default" / "eval" / "base"
    shards = run / "shards"
    seen: dict[str, int] = {}

    def some_shards_done():
        for p in shards.glob("*.json.gz"):
            seen.setdefault(p.name, p.stat().st_ino)
        return len(seen) >= 2

    out = launch_and_interrupt(
        "-m", "cluster=slurm", "cluster.partition=gpu", "cluster.timeout_min=15", "cluster.cpus_per_task=2",
        "stage=eval", f"paths.root={tmp_path}", "eval.model=base", "eval.benchmarks=[heldout_math,heldout_code]",
        "eval.limit=100", "eval.samples=4", "eval.max_tokens=96", "eval.shard_prompts=4", "eval.batch_prompts=4",
        cwd=tmp_path, ready=some_shards_done, what="the eval's first shards", ready_s=400, timeout=900)
    recs = attempts(run)
    assert [r["state"] for r in recs][-1] == "completed" and "preempted" in [r["state"] for r in recs], (recs, out)
    # what the first attempt finished was kept, not redone (the same files, never rewritten)
    kept = {p.name: p.stat().st_ino for p in shards.glob("*.json.gz")}
    assert len(kept) == 50 and all(kept[name] == ino for name, ino in seen.items()), (seen, kept)
    res = json.loads((run / "results.json").read_text())
    assert {b: v["n_samples"] for b, v in res["benchmarks"].items()} == {"heldout_math": 400, "heldout_code": 400}
    assert len(samples(run)) == 200
