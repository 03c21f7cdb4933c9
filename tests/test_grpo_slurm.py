"""GRPO preempted on the real local Slurm cluster: the urgent partition's job sends the
notice, the learner saves at the end of its step and every task stops; Slurm requeues
the job, the engines start again, get the checkpoint's weights, and the run goes on along
the same trajectory as an uninterrupted run (same rewards, same losses, same weights)."""
from __future__ import annotations

import json

import pytest

from conftest import attempts, launch_and_interrupt, sacct_rows
from deps import requires
from grpo_runs import assert_same_trajectory, reference_run, train_lines

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.vllm, requires("vllm")]

# domain=science: now and then even the untrained model's answer holds the right letter;
# with 128 rollouts a step most steps have a group whose rewards differ, so the weights
# really move (and a wrong resume would show)
GRPO = ["stage=grpo", "domain=science", "grpo.steps=6", "grpo.prompts_per_step=16", "grpo.group_size=8",
        "grpo.max_new_tokens=24", "grpo.optim.lr=1e-3", "run.save_every=1000"]
SLURM = ["cluster=slurm", "cluster.partition=cpu", "cluster.tasks_per_node=2", "cluster.mem_gb=12",
         "cluster.timeout_min=20"]


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
    assert_same_trajectory(run, reference_run(tmp_path, GRPO), steps=6)


def test_notice_in_the_middle_of_a_long_generation_saves_at_once(slurm_cluster, tmp_path):
    """A step of many seconds (long responses) preempted while the rollout worker is
    generating: the driver stops waiting at once, every learner saves the state of the last
    completed step within 10 s of the notice (not at the end of the step), the job is
    requeued, redoes the interrupted step with the same seeds, and ends in the weights of an
    uninterrupted run."""

    # domain=math: the untrained model never solves one, every advantage is 0 and the
    # learners skip them, so a step is almost all generation and the notice (about a
    # second after the urgent job's submission) lands in it whatever the machine's speed
    long = [a for a in GRPO if not a.startswith(("domain", "grpo.steps", "grpo.max_new_tokens"))]
    long += ["domain=math", "grpo.steps=3", "grpo.max_new_tokens=640"]
    run = tmp_path / "default" / "grpo" / "math"

    def mid_step_two() -> bool:
        # step 1 is done and step 2's generation (several seconds) has begun; the notice
        # comes about a second after the urgent job's submission (slurm/README.md)
        return len(train_lines(run)) == 1

    out = launch_and_interrupt(f"paths.root={tmp_path}", "-m", *SLURM, *long, cwd=tmp_path, ready=mid_step_two,
                               ready_s=400, what="the middle of the second GRPO step", timeout=900)
    recs = attempts(run)
    assert recs[-1]["state"] == "completed", (recs, out[-3000:])
    first, second = recs[0], recs[1]
    steps = [(x["time/step"], x["time/generate"]) for x in train_lines(run)]
    assert first["state"] == "preempted" and first["signal"] == "SIGUSR2" and first["step_end"] == 1, (recs, steps)
    notice_to_saved = first["last_checkpoint_time"] - first["signal_time"]
    step_s = train_lines(run)[0]["time/step"]
    print(f"\n[mid-step notice] step {step_s:.1f} s; notice -> saved {notice_to_saved:.1f} s; "
          f"requeue -> first new step {second['first_step_time'] - first['end_time']:.1f} s")
    assert 0 <= notice_to_saved < 10 and notice_to_saved < step_s / 2, (notice_to_saved, step_s)
    assert second["step_start"] == 1  # the interrupted step is redone

    assert_same_trajectory(run, reference_run(tmp_path, long, "math"), steps=3,
                           keys=("reward/mean", "response/length", "loss/policy"), moving=False)
