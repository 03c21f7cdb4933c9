"""The ledger on the real local Slurm cluster: a two-domain sweep (a Slurm array with one
fake GPU per task), preempted once by a GPU-hungry job in the `urgent` partition, then one
task SIGKILLed after it resumed (no notice, no save, its record has no end) and
relaunched. The report's GPU-seconds must equal the sum over `sacct -D` rows (computed here,
without the ledger's parser), count every preempted run and show the lost work."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SLURM_NODES, attempts, launch, launch_bg, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def sacct_gpu_seconds(job_id: str) -> tuple[float, list[list[str]]]:
    out = subprocess.run(["sacct", "-D", "-X", "-P", "-n", "-S", "now-2days", "-j", job_id,
                          "--format=JobID,JobIDRaw,State,ElapsedRaw,AllocTRES"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    total = 0.0
    for _, _, _, elapsed, tres in rows:
        m = re.search(r"(?:^|,)gres/gpu=(\d+)", tres)
        total += int(elapsed) * (int(m.group(1)) if m else 0)
    return total, rows


def job_pids(raw_job_id: str) -> list[int]:
    """The job body's python process (started by this test's sweep) of one Slurm job."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = (p / "environ").read_bytes().split(b"\0")
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SLURM_JOB_ID={raw_job_id}".encode() in env and Path(argv[0].decode()).name.startswith("python") \
                and b"submitit.core._submit" in argv:
            pids.append(int(p.name))
    return pids


def readable(run: Path) -> list[dict]:
    """The attempt records written so far (a file just claimed with O_EXCL is still empty)."""
    out = []
    for p in sorted((run / "attempts").glob("attempt-*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            break
    return out


def stepping(run: Path, attempt: int, seconds: float) -> bool:
    """Attempt `attempt` of the run has been taking steps for `seconds`."""
    recs = readable(run)
    return bool(len(recs) > attempt and recs[attempt].get("first_step_time")
                and time.time() - recs[attempt]["first_step_time"] > seconds)


def test_report_matches_sacct_with_a_preemption(slurm_cluster, tmp_path):
    exp = tmp_path / "ledger"
    math_run, code_run = exp / "toy" / "math", exp / "toy" / "code"
    sweep = [f"paths.root={tmp_path}", "experiment.name=ledger", "-m", "cluster=slurm", "cluster.partition=gpu",
             "cluster.gpus_per_node=1", "cluster.timeout_min=10", "domain=math,code", "stage=toy", "toy.steps=18",
             "toy.step_sleep_s=1", "run.save_every=100"]  # saves at the notice and the end only: the
    # SIGKILLed attempt's last checkpoint is its resume, not a periodic save a moment before the kill
    proc = launch_bg(*sweep, cwd=tmp_path)
    try:
        wait_for(lambda: stepping(math_run, 0, 3) and stepping(code_run, 0, 1), 240, "both tasks' first steps")
        # every GPU of every node (the two tasks may be on different nodes): preempts the jobs
        # holding GPUs (ours), not the CPU-only jobs of other tests
        urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-N", str(SLURM_NODES), "--gres=gpu:4",
                                 "-o", "/dev/null", "--wrap", "sleep 5"],
                                check=True, capture_output=True, text=True).stdout.strip()
        # once code has resumed, SIGKILL it: no notice, no save, its record gets no end
        wait_for(lambda: stepping(code_run, 1, 2.0), 240, "the code task to resume and take steps")  # sacct End: whole seconds
        # (scancel --signal=KILL becomes a step cancel here: SIGTERM first, and the job saves)
        pids = job_pids(readable(code_run)[1]["slurm_job_id"])
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        proc.communicate(timeout=480)
    finally:
        proc.kill()
    launch(*sweep, cwd=tmp_path)  # the relaunch resumes code from its checkpoint in a new job
    recs = {d: attempts(exp / "toy" / d) for d in ("math", "code")}
    assert all(r[-1]["state"] == "completed" for r in recs.values()), recs
    preempted = [a for r in recs.values() for a in r if a["state"] == "preempted"]
    killed = recs["code"][1]
    assert preempted and killed["state"] == "running" and killed["end_time"] is None, recs
    jobs = sorted({a["array_job_id"] or a["slurm_job_id"] for r in recs.values() for a in r})
    assert len(jobs) == 2, jobs  # the sweep's array, and the relaunch's
    n_attempts = sum(len(r) for r in recs.values())

    def settled():
        total, rows = sacct_gpu_seconds(",".join(jobs))
        done = rows and all(r[2] not in ("RUNNING", "PENDING", "COMPLETING") for r in rows)
        return (total, rows) if done and len(rows) >= n_attempts else None

    expected, rows = wait_for(settled, 120, "sacct to show every run of the jobs as ended", interval=2)

    proc = subprocess.run([sys.executable, "-m", "m2rl.report", str(exp)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = exp / "report"
    summary = json.loads((rep / "summary.json").read_text())
    got = summary["gpu_s"]
    ledger = list(csv.DictReader((rep / "ledger.csv").open()))
    killed_entry = next(e for e in ledger if e["run"] == "toy/code" and e["job_state"] == "killed")
    print(f"\n[ledger] sacct -D rows: {len(rows)} ({', '.join(r[0] + ':' + r[2] for r in rows)}); "
          f"GPU-seconds: sacct {expected:.0f}, report {got:.0f} ({(got - expected) / expected:+.2%}); "
          f"preempted attempts {len(preempted)} (lost work "
          f"{', '.join('%.3f s' % a['lost_work_s'] for a in preempted)}); SIGKILLed attempt: lost work "
          f"{float(killed_entry['lost_work_s']):.1f} s (Slurm End - last checkpoint); urgent job {urgent}")
    assert expected > 0
    assert abs(got - expected) <= 0.01 * expected
    assert summary["sacct"]["used"] and summary["sacct"]["rows"] == len(rows)
    assert summary["unattributed_gpu_s"] == 0

    # every interrupted run is an entry of its own, counted from Slurm, matched to its attempt
    interrupted = [e for e in ledger if e["state"] != "completed"]
    assert len(interrupted) == len(preempted) + 1, ledger
    for e in interrupted:
        assert e["source"] == "slurm+job" and float(e["gpu_s"]) > 0 and e["lost_work_s"] != ""
        assert e["job_state"] in ("preempted", "killed")
    assert {e["slurm_state"] for e in interrupted if e["job_state"] == "preempted"} <= {"PREEMPTED", "REQUEUED"}
    # the killed attempt has no lost_work_s of its own: the ledger takes Slurm's End back to
    # its last checkpoint (a second or more of steps since it resumed from the preemption's save)
    assert killed["lost_work_s"] is None and float(killed_entry["lost_work_s"]) >= 1.0
    assert float(killed_entry["lost_work_s"]) == pytest.approx(
        float(killed_entry["end"]) - killed["last_checkpoint_time"], abs=1e-3)
    assert "killed hard" in killed_entry["notes"]
    runs = summary["runs"]
    for a in preempted:
        assert runs[f"toy/{a['run']['domain']}"]["interruptions"] >= 1
    assert runs["toy/code"]["lost_work_s"] >= float(killed_entry["lost_work_s"])
    md = (rep / "report.md").read_text()
    section = md.split("### Interrupted attempts", 1)[1].split("\n## ", 1)[0]
    for e in interrupted:
        assert f"| {e['run']} | {e['job_id']} | {e['restart']} |" in section
    assert "killed hard" in md
    html = (rep / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
