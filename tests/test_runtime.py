"""The job runtime on its own: atomic checkpoints under SIGKILL, pointers, pruning,
signals, the time-limit guard and attempt records."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from m2rl.runtime import atomic
from m2rl.runtime.checkpoint import CheckpointManager
from m2rl.runtime.preemption import PreemptionWatcher
from m2rl.runtime.timelimit import TimeLimitGuard

WRITER = textwrap.dedent("""
    import hashlib, os, sys
    from m2rl.runtime.checkpoint import CheckpointManager
    mgr = CheckpointManager(sys.argv[1], keep_last=2)
    start = mgr.latest().step if mgr.latest() else 0
    for step in range(start + 1, 10**6):
        def write(d, step=step):
            blob = os.urandom(256 * 1024) * 4          # 1 MiB, written in pieces
            with open(d / "blob.bin", "wb") as f:
                for i in range(0, len(blob), 65536):
                    f.write(blob[i:i + 65536])
            (d / "blob.sha").write_text(hashlib.sha256(blob).hexdigest())
        mgr.save(step, write)
        print(step, flush=True)
""")


def test_checkpoints_survive_sigkill_at_any_moment(tmp_path):
    """Kill a writer at random moments, many times: `latest` always names a complete,
    uncorrupted checkpoint, and the step never goes backwards."""
    rng = random.Random(0)
    root = tmp_path / "ck"
    last_step = 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one save done in this round
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = CheckpointManager(root).latest()
        assert ck is not None and ck.step >= last_step
        blob = (ck.path / "blob.bin").read_bytes()
        assert hashlib.sha256(blob).hexdigest() == (ck.path / "blob.sha").read_text()
        last_step = ck.step
    assert len(CheckpointManager(root).complete()) <= 3  # pruned to keep_last (+1 in flight)


def test_latest_pointer_prune_and_fallback(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (5, 10, 15):
        mgr.save(step, lambda d, s=step: (d / "v").write_text(str(s)))
    assert [c.step for c in mgr.complete()] == [10, 15]
    assert (tmp_path / "latest").read_text().strip() == "step_00000015"
    assert (mgr.latest().path / "v").read_text() == "15"
    # a writer that died mid-save leaves only a hidden dir: ignored
    (tmp_path / ".step_00000020.staging").mkdir()
    (tmp_path / "step_00000025").mkdir()  # no checkpoint.json: incomplete, ignored
    assert mgr.latest().step == 15
    (tmp_path / "latest").unlink()  # pointer lost: newest complete dir
    assert mgr.latest().step == 15
    with pytest.raises(RuntimeError):
        mgr.save(30, lambda d: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert mgr.latest().step == 15 and not (tmp_path / "step_00000030").exists()
    mgr.save(35, lambda d: (d / "v").write_text("35"))  # the next save clears the dead writers' leftovers
    assert mgr.latest().step == 35 and not list(tmp_path.glob(".step_*"))


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "a" / "rec.json"
    atomic.write_json(p, {"x": 1})
    atomic.write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [q.name for q in p.parent.iterdir()] == ["rec.json"]  # no temp file left


def test_preempt_signals_only_set_a_flag():
    w = PreemptionWatcher().install()
    try:
        assert not w.requested
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)
        assert w.requested and w.signum == signal.SIGUSR2
        os.kill(os.getpid(), signal.SIGTERM)  # a second notice keeps the first
        time.sleep(0.05)
        assert w.signum == signal.SIGUSR2
        w.requeue()  # nothing to hand over to outside submitit: returns
    finally:
        w.uninstall()
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler, None) or callable(
        signal.getsignal(signal.SIGTERM))


def test_time_guard_fires_one_step_before_the_deadline():
    now = 1000.0
    g = TimeLimitGuard(deadline=now + 100, margin_s=10)
    for i in range(5):  # steps of 8 s
        g.step_done(now + 8 * i)
    assert g.mean_step_s == pytest.approx(8.0)
    t = now + 32
    assert not g.must_stop(save_s=5, now=t)          # 32+8+5+10 = 55 < 100
    assert not g.must_stop(save_s=5, now=now + 76)   # 76+8+5+10 = 99 < 100
    assert g.must_stop(save_s=5, now=now + 78)       # one more step and a save won't fit
    assert not TimeLimitGuard(None).must_stop(1e9)


def test_a_multi_node_jobs_cpus_are_every_nodes(monkeypatch):
    """The attempt record's `cpus` (CPU-hours of CPU jobs) is the whole job's, not one node's."""
    from m2rl.runtime.attempts import allocated_cpus

    for var in ("SLURM_JOB_CPUS_PER_NODE", "SLURM_CPUS_ON_NODE"):
        monkeypatch.delenv(var, raising=False)
    assert allocated_cpus(4, 2) == 8  # no Slurm: the configured count per node x nodes
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "6")
    assert allocated_cpus(4, 3) == 18
    for spec, want in (("8(x2)", 16), ("72(x2),36", 180), ("8", 8)):
        monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", spec)
        assert allocated_cpus(4, 2) == want, spec


def test_scancel_is_told_from_preemption_requeue_and_time_limit():
    """`scontrol show job -o` fields at the SIGTERM, as measured on Slurm 22.05
    (m2rl/runtime/cancel.py): only a plain scancel counts as cancelled."""
    from m2rl.runtime.cancel import cancelled

    base = {"JobState": "COMPLETING", "PreemptTime": "None", "Restarts": "1", "Reason": "None"}
    assert cancelled(base, restarts_at_start=1)                                   # scancel
    assert cancelled({**base, "JobState": "CANCELLED"}, restarts_at_start=1)
    assert not cancelled({**base, "Restarts": "2"}, restarts_at_start=1)          # scontrol requeue
    assert not cancelled({**base, "PreemptTime": "2026-12-03T12:00:00"}, 1)       # preemption
    assert not cancelled({**base, "JobState": "RUNNING"}, 1)                      # scancel --signal=TERM
    assert not cancelled({**base, "Reason": "TimeLimit"}, 1)                      # the time limit
    assert not cancelled({}, 0)                                                   # scontrol did not answer


def test_resume_with_no_step_left_finishes_as_done(tmp_path):
    """A crash between the last save and DONE.json: the relaunch has zero steps to do and
    must finish cleanly as done (a completed attempt, DONE.json written), not exit silently."""
    from conftest import attempts, launch

    args = (f"paths.root={tmp_path}", "stage=toy", "toy.steps=4", "run.save_every=2")
    launch(*args, cwd=tmp_path)
    run = tmp_path / "default" / "toy" / "math"
    (run / "DONE.json").unlink()
    launch(*args, cwd=tmp_path)
    recs = attempts(run)
    assert [(r["state"], r["step_start"], r["step_end"]) for r in recs] == [("completed", 0, 4), ("completed", 4, 4)]
    assert json.loads((run / "DONE.json").read_text())["step"] == 4


ORPHAN = """
import subprocess, sys
from m2rl.runtime.preemption import children_deaf_to_preemption
with children_deaf_to_preemption():
    child = subprocess.Popen(["sleep", "600"])
print(child.pid, flush=True)
sys.stdin.read()  # until the test kills this process
"""


def test_deaf_children_die_with_a_sigkilled_parent():
    """A child started deaf to the notices (an engine core, a verifier pool) used to
    survive its process's SIGKILL, re-parented to init (CI found vLLM engines of a killed
    rollout task alive, 2-3 GB each, long after the test)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    time.sleep(1.5)  # the watcher has seen the child
    assert child.is_running() and child.ppid() == parent.pid
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        child.wait(timeout=10)
    except psutil.TimeoutExpired:
        child.kill()
        raise AssertionError("the deaf child outlived its SIGKILLed parent") from None
