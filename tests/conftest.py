"""Shared fixtures: the real local Slurm cluster, and running `python -m m2rl.launch`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _argv(args) -> list[str]:
    flags = [a for a in args if a.startswith("-")]  # Hydra wants its flags before overrides
    return [sys.executable, "-m", "m2rl.launch", *flags, *[a for a in args if not a.startswith("-")]]


def launch(*args: str, cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real entry point, as a user would."""
    proc = subprocess.run(_argv(args), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"launch failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def launch_bg(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(_argv(args), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


SLURM_NODES = 3  # the test cluster: `cluster.sh up --nodes 3` (n1..n3)


def preempt_with_urgent_job(nodelist: str | None = None) -> None:
    """Whole-node jobs in the high-priority partition: Slurm preempts what runs there. On
    `nodelist` (e.g. "n2"), else on every node of the cluster, so whatever node a job is on."""
    where = ["-w", nodelist] if nodelist else ["-N", str(SLURM_NODES)]
    subprocess.run(["sbatch", "-p", "urgent", "--exclusive", *where, "-o", "/dev/null", "--wrap", "sleep 3"],
                   check=True, capture_output=True)


def launch_and_interrupt(*args: str, cwd: Path, ready, what: str, interrupt=preempt_with_urgent_job,
                         ready_s: float = 300, timeout: float = 600) -> str:
    """Launch in the background, wait until `ready()`, `interrupt()` the job, wait for the
    launch (and so every requeued attempt) to end; returns its output."""
    proc = launch_bg(*args, cwd=cwd)
    try:
        wait_for(ready, ready_s, what)
        interrupt()
        out, _ = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return out


def attempts(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run_dir / "attempts").glob("attempt-*.json"))]


def wait_for(pred, timeout: float, what: str, interval: float = 0.5):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def cluster_up() -> tuple[bool, str]:
    """(up, why not): brings up the local Slurm cluster of SLURM_NODES nodes (slurm/cluster.sh up, idempotent)."""
    if shutil.which("bash") is None or not (REPO / "slurm" / "cluster.sh").is_file():
        return False, "slurm/cluster.sh is missing"
    if os.geteuid() != 0:
        return False, "bringing up the local Slurm cluster needs root"
    proc = subprocess.run(["bash", str(REPO / "slurm" / "cluster.sh"), "up", "--nodes", str(SLURM_NODES)], capture_output=True, text=True,
                          timeout=600)
    return proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def pytest_sessionstart(session):
    """Everything M2RL_REQUIRE names must be here and work, or the run stops at once."""
    import deps

    try:
        names = deps.required()
    except ValueError as e:
        pytest.exit(str(e), returncode=4)
    missing = [f"{n}: {why}" for n in names for ok, why in [deps.probe(n)] if not ok]
    if missing:
        pytest.exit("M2RL_REQUIRE names what this machine must have; missing or broken:\n  "
                    + "\n  ".join(missing), returncode=4)


@pytest.fixture(scope="session")
def slurm_cluster():
    """The real local Slurm cluster (slurm/cluster.sh up --nodes 3). Skips only where it cannot
    run at all, and never where M2RL_REQUIRE names slurm (CI)."""
    import deps

    ok, why = deps.probe("slurm")
    if not ok:
        pytest.skip(f"local Slurm cluster unavailable: {why}")
    return True


UNSETTLED = ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED")


def sacct_rows(job_id: str, at_least: int = 0, timeout: float = 60) -> list[dict]:
    """`sacct -D -X` rows of a job that has ended. slurmdbd records a job's runs (an
    array's tasks, a requeued job's earlier runs) a moment after they end, and may still
    show an ended run as PENDING without its allocation: with `at_least`, poll until that
    many rows are there and none is still pending or running (or the timeout), then
    return what sacct has."""
    fields = "JobID,JobIDRaw,State,ElapsedRaw,AllocTRES,Partition"

    def query() -> list[dict]:
        out = subprocess.run(["sacct", "-D", "-X", "-P", "-n", "-S", "now-1days", "-j", job_id,
                              f"--format={fields}"], capture_output=True, text=True, timeout=60, check=True).stdout
        return [dict(zip(fields.split(","), line.split("|"))) for line in out.splitlines() if line.strip()]

    end = time.time() + timeout
    rows = query()
    def settled(rows: list[dict]) -> bool:
        return len(rows) >= at_least and not any(r["State"] in UNSETTLED for r in rows)

    while at_least and not settled(rows) and time.time() < end:
        time.sleep(1)
        rows = query()
    return rows
