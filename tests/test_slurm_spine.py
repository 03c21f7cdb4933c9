"""The launch spine on the real local Slurm cluster: arrays with fake GPUs, preemption
(user signal, SIGTERM, external requeue), SIGKILL during a checkpoint write, the time
limit, and a relaunch that submits nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import attempts, launch, launch_and_interrupt, preempt_with_urgent_job, sacct_rows

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SLURM = ["cluster=slurm", "cluster.partition=cpu", "cluster.timeout_min=10"]


def final_weights(run: Path) -> dict:
    return torch.load(run / "final_model.pt")


def reference(tmp_path: Path, toy: list[str]) -> dict:
    """The same seeded run, uninterrupted, in this process's machine (inline)."""
    launch(f"paths.root={tmp_path}", "experiment.name=reference", *toy, cwd=tmp_path)
    return final_weights(tmp_path / "reference" / "toy" / "math")


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def started(run: Path, min_steps: int = 1):
    """The first attempt has run its first step (and `min_steps` seconds of them)."""
    recs = attempts(run) if (run / "attempts").is_dir() else []
    return recs and recs[-1].get("first_step_time") and time.time() - recs[-1]["first_step_time"] > min_steps


def test_two_domain_sweep_is_an_array_with_fake_gpus(slurm_cluster, tmp_path):
    args = [f"paths.root={tmp_path}", "-m", "cluster=slurm", "cluster.partition=gpu", "cluster.gpus_per_node=2",
            "domain=math,code", "stage=toy", "toy.steps=6"]
    launch(*args, cwd=tmp_path)
    recs = {d: attempts(tmp_path / "default" / "toy" / d) for d in ("math", "code")}
    assert all(len(r) == 1 and r[0]["state"] == "completed" for r in recs.values()), recs
    array_ids = {r[0]["array_job_id"] for r in recs.values()}
    assert len(array_ids) == 1 and None not in array_ids  # one Slurm array
    assert sorted(r[0]["array_task_id"] for r in recs.values()) == [0, 1]
    for r in recs.values():
        assert r[0]["executor"] == "slurm" and r[0]["partition"] == "gpu"
        # two of the node's four fake GPUs, seen by the task (no cgroup here: real indices)
        devices = r[0]["devices"].split(",")
        assert len(devices) == 2 and set(devices) <= {"0", "1", "2", "3"} and r[0]["gpus"] == 2
    rows = sacct_rows(array_ids.pop(), at_least=2)
    assert len(rows) == 2 and all("gres/gpu=2" in row["AllocTRES"] for row in rows)

    # (d) relaunching the finished sweep submits nothing
    submitted = sorted((tmp_path / "default" / ".submitit").iterdir())
    proc = launch(*args, cwd=tmp_path)
    assert "nothing to submit" in proc.stdout
    assert sorted((tmp_path / "default" / ".submitit").iterdir()) == submitted  # no new submitit job


@pytest.mark.parametrize("how", ["urgent_job", "sigterm", "scontrol_requeue"])
def test_preempted_job_resumes_to_the_same_final_state(slurm_cluster, tmp_path, how):
    """(b) Interrupt a running job three ways: preemption by the urgent partition (USR2
    via preempt_send_user_signal), a bare SIGTERM (clusters without that setting), and an
    external `scontrol requeue` (no submitit checkpoint() call; Slurm sends SIGTERM before
    it kills). Each time the job saves at its next step boundary, is requeued, resumes
    where it saved without losing a step, and ends in the same weights as an
    uninterrupted run of the same seed."""
    toy = ["stage=toy", "toy.steps=30", "toy.step_sleep_s=0.4", "run.save_every=1000"]
    run = tmp_path / "default" / "toy" / "math"
    def interrupt() -> None:
        job = attempts(run)[0]["slurm_job_id"]
        if how == "urgent_job":
            preempt_with_urgent_job()
        elif how == "sigterm":
            subprocess.run(["scancel", "--signal=TERM", job], check=True)
        else:
            subprocess.run(["scontrol", "requeue", job], check=True)

    out = launch_and_interrupt(f"paths.root={tmp_path}", "-m", *SLURM, *toy, cwd=tmp_path, ready=lambda: started(run, 4),
                               what="the job's first steps", interrupt=interrupt, ready_s=180, timeout=480)
    recs = attempts(run)
    assert recs[-1]["state"] == "completed", (recs, out[-3000:])
    first, last = recs[0], recs[-1]
    assert first["state"] == "preempted" and first["signal"] == ("SIGUSR2" if how == "urgent_job" else "SIGTERM")
    assert first["lost_work_s"] < 1.0
    assert last["step_start"] == first["step_end"] > 0  # resumed exactly where it saved: no step lost
    print(f"\n[{how}] signal -> resumed first step: {last['first_step_time'] - first['signal_time']:.1f} s, "
          f"steps lost: {first['step_end'] - last['step_start']}")
    assert len({r["slurm_job_id"] for r in recs}) == 1  # requeued, not resubmitted
    assert len(sacct_rows(first["slurm_job_id"], at_least=2)) >= 2  # sacct -D: every run of the requeued job
    assert same(final_weights(run), reference(tmp_path, toy))


def test_sigkill_during_checkpoint_write_resumes_from_previous_good_one(slurm_cluster, tmp_path):
    """(c) SIGKILL lands while a checkpoint is half written: the relaunch resumes from the
    previous complete checkpoint and still reaches the uninterrupted run's weights."""
    toy = ["stage=toy", "toy.steps=16", "toy.step_sleep_s=0.2", "run.save_every=4", "toy.save_sleep_s=2"]
    run = tmp_path / "default" / "toy" / "math"
    ckdir = run / "checkpoints"
    # once the second save is in flight (the first, step 4, is complete), SIGKILL the task
    launch_and_interrupt(f"paths.root={tmp_path}", "-m", *SLURM, *toy, cwd=tmp_path,
                         ready=lambda: (ckdir / ".step_00000008.staging" / "state.pt").exists(), ready_s=180,
                         what="a checkpoint write", interrupt=lambda: os.kill(attempts(run)[0]["pid"], signal.SIGKILL),
                         timeout=120)
    assert (ckdir / "latest").read_text().strip() == "step_00000004"
    assert attempts(run)[0]["state"] == "running"  # killed hard: no end written
    launch(f"paths.root={tmp_path}", "-m", *SLURM, *toy, cwd=tmp_path)
    recs = attempts(run)
    assert recs[-1]["state"] == "completed" and recs[-1]["step_start"] == 4
    assert same(final_weights(run), reference(tmp_path, toy))


def test_time_limit_guard_saves_and_requeues_before_the_end(slurm_cluster, tmp_path):
    """A 2-minute allocation, 1-second steps and a 70 s margin: the guard saves at about
    44 s, before Slurm's own USR2 (which Slurm may send up to 60 s before the end), the job
    requeues itself and finishes in the next allocation without losing a step."""
    toy = ["stage=toy", "toy.steps=70", "toy.step_sleep_s=1.0", "run.save_every=1000", "run.time_margin_s=70"]
    run = tmp_path / "default" / "toy" / "math"
    launch(f"paths.root={tmp_path}", "-m", "cluster=slurm", "cluster.partition=cpu", "cluster.timeout_min=2",
           "cluster.signal_delay_s=5", *toy, cwd=tmp_path, timeout=600)
    recs = attempts(run)
    guarded, after = recs[0], recs[1]
    assert guarded["state"] == "timeout" and guarded["signal"] is None, recs  # the guard, not a signal
    assert guarded["lost_work_s"] < 1.0  # saved right before stopping: not even one step lost
    assert after["step_start"] == guarded["step_end"] > 0
    assert guarded["end_time"] - guarded["start_time"] < 60  # well inside its allocation
    assert recs[-1]["state"] == "completed"
    assert json.loads((run / "DONE.json").read_text())["step"] == 70


def test_squeue_end_time_is_read_in_utc_whatever_the_zone(slurm_cluster, tmp_path):
    """The time guard's deadline from squeue's zone-less EndTime, in a process whose zone
    is 14 hours from UTC: still the job's real end (start + its 10-minute limit)."""
    job = subprocess.run(["sbatch", "--parsable", "-p", "cpu", "-c", "1", "--time=10", "-o", "/dev/null",
                          "--wrap", "sleep 120"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        from conftest import wait_for

        wait_for(lambda: subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                        text=True).stdout.strip() == "RUNNING", 60, "the job to start")
        started_at = time.time()
        code = f"from m2rl.runtime.timelimit import slurm_end_time; print(slurm_end_time('{job}'))"
        for tz in ("Pacific/Kiritimati", "America/Los_Angeles"):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ, "TZ": tz}).stdout
            assert abs(float(out) - (started_at + 600)) < 30, (tz, out, started_at)
    finally:
        subprocess.run(["scancel", job])


def test_scancel_is_recorded_as_cancelled_saved_and_not_requeued(slurm_cluster, tmp_path):
    """A user's `scancel` reaches the job as the same SIGTERM as a preemption: the job still
    saves at its next step boundary, but records "cancelled" and is not requeued; the same
    command run again resumes from that save and ends in the uninterrupted run's weights."""
    toy = ["stage=toy", "toy.steps=30", "toy.step_sleep_s=0.4", "run.save_every=1000"]
    run = tmp_path / "default" / "toy" / "math"
    args = (f"paths.root={tmp_path}", "-m", *SLURM, *toy)
    launch_and_interrupt(*args, cwd=tmp_path, ready=lambda: started(run, 4), what="the job's first steps",
                         interrupt=lambda: subprocess.run(["scancel", attempts(run)[0]["slurm_job_id"]], check=True),
                         ready_s=180, timeout=300)
    recs = attempts(run)
    assert len(recs) == 1, recs  # not requeued
    first = recs[0]
    assert first["state"] == "cancelled" and first["signal"] == "SIGTERM", first
    assert first["last_checkpoint_step"] == first["step_end"] > 0, first
    time.sleep(12)  # past cred_expire: a requeued job would be running again by now
    rows = sacct_rows(first["slurm_job_id"], at_least=1)
    assert [r["State"].split()[0] for r in rows] == ["CANCELLED"], rows
    assert len(attempts(run)) == 1 and not (run / "DONE.json").exists()

    launch(*args, cwd=tmp_path, timeout=300)
    recs = attempts(run)
    assert [r["state"] for r in recs] == ["cancelled", "completed"] and recs[1]["step_start"] == first["step_end"]
    assert same(final_weights(run), reference(tmp_path, toy))


def test_sweep_over_cluster_values_gives_each_job_its_own_resources(slurm_cluster, tmp_path):
    """`-m cluster.cpus_per_task=1,2`: Hydra builds the launcher once, from the sweep's base
    config; each job must still be submitted with its own value (one array per resource
    set), as its attempt record and Slurm's accounting show."""
    args = [f"paths.root={tmp_path}", "-m", *SLURM, "stage=toy", "toy.steps=3", "cluster.cpus_per_task=1,2",
            "run.name=c${cluster.cpus_per_task}"]
    launch(*args, cwd=tmp_path, timeout=300)
    got = {}
    for cpus in (1, 2):
        (rec,) = attempts(tmp_path / "default" / "toy" / f"c{cpus}")
        assert rec["state"] == "completed" and rec["cpus"] == cpus, rec
        (row,) = sacct_rows(rec["slurm_job_id"], at_least=1)
        assert f"cpu={cpus}," in row["AllocTRES"] + ",", row
        got[cpus] = rec["slurm_job_id"].split("_")[0]
    assert got[1] != got[2]  # two submissions: one resource set each
