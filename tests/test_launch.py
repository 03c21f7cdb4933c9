"""`python -m m2rl.launch` on this machine: validation before submission, deterministic
run dirs, resume after a crash, and the local executor."""
from __future__ import annotations

import json
import os

import torch

from conftest import attempts, launch

TOY = ["stage=toy", "toy.steps=12", "run.save_every=4"]


def test_bad_input_stops_with_one_message_naming_field_and_fix(tmp_path):
    cases = {
        ("domain=foo",): ("`domain`", "use one of code, if, math, multi, science"),
        ("cluster.gpus_per_node=-1",): ("`cluster.gpus_per_node`", "fix:"),
        ("cluster=slurm",): ("`cluster.partition`", "cluster.partition=<name>"),
        ("domain.name=chemistry",): ("`domain.name`", "use one of"),
        ("stage=toy", "toy.steps=0"): ("`toy.steps`", "fix:"),
    }
    for args, (field, fix) in cases.items():
        proc = launch("-m", f"paths.root={tmp_path}", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert field in proc.stderr and fix in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    # nothing was submitted and no run dir was made (Hydra only leaves its multirun.yaml)
    assert not (tmp_path / "default" / ".submitit").exists() and not (tmp_path / "default" / "toy").exists()


def test_a_start_from_a_run_that_has_not_exported_is_refused_before_submission(tmp_path):
    for stage in ("grpo", "sft"):
        proc = launch(f"paths.root={tmp_path}", "-m", f"stage={stage}", f"{stage}.init_from=sft/multi",
                      cwd=tmp_path, check=False)
        assert proc.returncode != 0
        assert f"{stage}.init_from" in proc.stderr and "sft/multi has no exported model" in proc.stderr
        assert "python -m m2rl.launch stage=sft domain=multi" in proc.stderr
    # nothing submitted, no run dir (Hydra's multirun.yaml is all there is)
    assert [p.name for p in (tmp_path / "default").iterdir()] == ["multirun.yaml"]


def test_unreachable_slurm_controller_is_refused_before_submission(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost\nSlurmctldPort=1\nAuthType=auth/munge\n"
                    "NodeName=localhost CPUs=1\nPartitionName=cpu Nodes=localhost\n")
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "m2rl.launch", "-m", f"paths.root={tmp_path}", "cluster=slurm",
                           "cluster.partition=cpu"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "SLURM_CONF": str(conf)}, timeout=120)
    assert proc.returncode == 2
    assert "`cluster`" in proc.stderr and "does not answer" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("default/.submitit/*"))


def test_inline_run_crash_then_resume_and_skip(tmp_path):
    run = tmp_path / "default" / "toy" / "math"
    proc = launch(f"paths.root={tmp_path}", *TOY, "toy.fail_at_step=9", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    first = attempts(run)
    assert [a["state"] for a in first] == ["failed"] and "fail_at_step" in first[0]["exit_reason"]
    assert first[0]["last_checkpoint_step"] == 8
    # the crash flag is a runtime knob, not part of the run's identity: allow it to change
    launch(f"paths.root={tmp_path}", *TOY, "run.allow_config_change=true", cwd=tmp_path)
    recs = attempts(run)
    assert [a["state"] for a in recs] == ["failed", "completed"]
    assert recs[1]["step_start"] == 8 and recs[1]["step_end"] == 12
    # same final weights as a run that never crashed
    launch(f"paths.root={tmp_path}", "experiment.name=clean", *TOY, cwd=tmp_path)
    a = torch.load(run / "final_model.pt")
    b = torch.load(tmp_path / "clean" / "toy" / "math" / "final_model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # finished: a relaunch does nothing
    launch(f"paths.root={tmp_path}", *TOY, cwd=tmp_path)
    assert len(attempts(run)) == 2
    # a different config for the same run dir is refused, naming the difference
    proc = launch(f"paths.root={tmp_path}", "stage=toy", "toy.steps=20", "run.save_every=4", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "toy.steps: 12 -> 20" in proc.stderr


def test_local_executor_multirun_then_relaunch_submits_nothing(tmp_path):
    proc = launch("-m", f"paths.root={tmp_path}", "domain=math,code", *TOY, cwd=tmp_path)
    spans = []
    for d in ("math", "code"):
        run = tmp_path / "default" / "toy" / d
        done = json.loads((run / "DONE.json").read_text())
        assert done["step"] == 12
        rec = attempts(run)
        assert [a["executor"] for a in rec] == ["local"] and rec[0]["state"] == "completed"
        spans.append((rec[0]["start_time"], rec[0]["end_time"]))
    # one job after another on one machine (they would share its CPUs and GPUs)
    (s1, e1), (s2, e2) = sorted(spans)
    assert e1 <= s2
    n_jobs = len(list((tmp_path / "default" / ".submitit").iterdir()))
    proc = launch("-m", f"paths.root={tmp_path}", "domain=math,code", *TOY, cwd=tmp_path)
    assert "nothing to submit" in proc.stdout
    assert len(list((tmp_path / "default" / ".submitit").iterdir())) == n_jobs


def test_local_sweep_runs_every_job_when_one_fails(tmp_path):
    """Serial local jobs: the failing one (r4) does not keep the next (r100) from running."""
    proc = launch("-m", f"paths.root={tmp_path}", "stage=toy", "toy.steps=6", "run.save_every=3",
                  "toy.fail_at_step=4,100", "run.name=r${toy.fail_at_step}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "toy.fail_at_step=4" in proc.stderr
    failed, ok = tmp_path / "default" / "toy" / "r4", tmp_path / "default" / "toy" / "r100"
    assert [a["state"] for a in attempts(failed)] == ["failed"] and not (failed / "DONE.json").exists()
    assert json.loads((ok / "DONE.json").read_text())["step"] == 6


def test_ctrl_c_stops_a_local_sweep_at_a_step_boundary_and_a_relaunch_resumes(tmp_path):
    """Ctrl-C in a terminal (SIGINT to the launch's whole process group) during a local
    sweep: the running job saves at its next step boundary and ends ("interrupted", not
    requeued), the next job never starts, and the launch exits non-zero saying that the
    same command resumes; it does, and finishes both runs."""
    import signal
    import subprocess
    import time

    from conftest import _argv, wait_for

    args = (f"paths.root={tmp_path}", "-m", "stage=toy", "domain=math,code", "toy.steps=40", "toy.step_sleep_s=0.3",
            "run.save_every=1000")
    math, code = (tmp_path / "default" / "toy" / d for d in ("math", "code"))
    proc = subprocess.Popen(_argv(args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group, as a terminal's foreground job
    try:
        wait_for(lambda: (math / "attempts").is_dir() and attempts(math)[-1].get("first_step_time")
                 and time.time() - attempts(math)[-1]["first_step_time"] > 2, 180, "the first job's steps")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "Run the same command again to resume" in out, out[-3000:]
    (rec,) = attempts(math)
    assert rec["state"] == "interrupted" and 0 < rec["step_end"] < 40, rec
    assert rec["last_checkpoint_step"] == rec["step_end"], rec  # saved at the boundary, not killed
    assert not (code / "attempts").exists()  # the next job never started
    assert not (math / "STOP").exists()

    launch(*args, cwd=tmp_path, timeout=600)
    recs = attempts(math)
    assert [r["state"] for r in recs] == ["interrupted", "completed"] and recs[1]["step_start"] == rec["step_end"]
    assert attempts(code)[-1]["state"] == "completed"
