"""The GPU-hour ledger: sacct parsing on real captured text, reading attempt records
(corrupt ones reported, never dropped silently), and reconciliation rules."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from m2rl import ledger
from m2rl.ledger import sacct
from m2rl.ledger.records import NoExperiment

from deps import requires

FIX = Path(__file__).parent / "fixtures"
STUDY, STUDY_SACCT = FIX / "study", FIX / "study-sacct.psv"
REAL = FIX / "slurm-run"  # a real run on the local cluster: preempted, SIGKILLed, relaunched


# ------------------------------------------------------------------ sacct text

def test_parse_real_iso_capture_with_preemption_and_running_requeue():
    rows = sacct.parse((FIX / "sacct" / "iso-preempted-running.psv").read_text())
    assert len(rows) == 10
    job8 = [r for r in rows if r.job_id_raw == "8"]
    assert [r.state for r in job8] == ["PREEMPTED", "RUNNING"]  # sacct -D: both runs of the requeued job
    assert job8[1].end is None and job8[1].elapsed_s == 11
    assert job8[1].queued_s == pytest.approx(13)  # requeued 16:22:56, started again 16:23:09
    gpu = next(r for r in rows if r.job_id == "3")
    assert gpu.gpus == 2 and gpu.partition == "gpu"
    assert all(r.gpus == 0 for r in rows if r.job_id != "3")


def test_parse_real_epoch_capture_of_an_array():
    rows = sacct.parse((REAL / "sacct.psv").read_text())
    assert [(r.job_id, r.state) for r in rows] == [
        ("46_0", "REQUEUED"), ("46_1", "REQUEUED"), ("46_0", "COMPLETED"), ("46_1", "FAILED"), ("49", "COMPLETED")]
    assert rows[0].array_job_id == "46" and rows[0].array_task_id == 0 and rows[0].job_id_raw == "47"
    assert rows[4].array_job_id is None
    assert sum(r.gpu_seconds for r in rows) == 12 + 12 + 20 + 8 + 20
    assert rows[0].start == 1795365713.0


def test_parse_tres_steps_and_pipes_in_job_names():
    assert sacct.tres_count("billing=2,cpu=2,gres/gpu=2,mem=2G,node=1", "gres/gpu") == 2
    assert sacct.tres_count("cpu=8,gres/gpu:a100=4,gres/gpu:h100=2,node=1", "gres/gpu") == 6
    assert sacct.tres_count("cpu=8,gres/gpu=6,gres/gpu:a100=6", "gres/gpu") == 6
    text = ("JobID|JobIDRaw|State|ElapsedRaw|AllocTRES|JobName\n"
            "7|7|CANCELLED by 0|30|gres/gpu=1|a|b|c\n"
            "7.batch|7|COMPLETED|30|cpu=1|batch\n")
    rows = sacct.parse(text)
    assert len(rows) == 1 and rows[0].name == "a|b|c" and rows[0].state == "CANCELLED"
    assert rows[0].state_raw == "CANCELLED by 0" and rows[0].start is None


def test_parse_rejects_text_that_is_not_sacct_output():
    with pytest.raises(sacct.SacctParseError, match="lacks the field"):
        sacct.parse("hello|world\n1|2\n")
    with pytest.raises(sacct.SacctParseError, match="line 2"):
        sacct.parse("JobID|JobIDRaw|State|ElapsedRaw|AllocTRES|Start\n1|1|COMPLETED|5|cpu=1|yesterday\n")


def test_sacct_missing_from_path_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ledger.SacctUnavailable, match="not on PATH"):
        sacct.query(["1"], 0)


@requires("slurm")
def test_sacct_that_cannot_reach_slurmdbd_is_a_clear_error(tmp_path, monkeypatch):
    """The real sacct, pointed by SLURM_CONF at an accounting port where nothing listens."""
    conf = Path("/etc/slurm/slurm.conf")  # written by cluster.sh up
    lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("AccountingStoragePort")]
    (tmp_path / "slurm.conf").write_text("\n".join(lines + ["AccountingStoragePort=9"]) + "\n")
    for extra in ("gres.conf", "cgroup.conf"):
        if (conf.parent / extra).is_file():
            shutil.copy(conf.parent / extra, tmp_path / extra)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    with pytest.raises(ledger.SacctUnavailable, match="exited|database|refused"):
        sacct.query(["1"], 0, timeout_s=60)


# ------------------------------------------------------------------ records

def copy_study(tmp_path: Path) -> Path:
    exp = tmp_path / "study"
    shutil.copytree(STUDY, exp)
    return exp


def test_missing_and_empty_experiment_dirs(tmp_path):
    with pytest.raises(NoExperiment, match="no experiment directory"):
        ledger.scan(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoExperiment, match="holds no runs"):
        ledger.scan(tmp_path / "empty")
    # paths.root given instead of one experiment: say which experiments are there
    copy_study(tmp_path / "root")
    with pytest.raises(NoExperiment, match="looks like paths.root.*study"):
        ledger.scan(tmp_path / "root")


def test_corrupt_records_are_reported_and_skipped_and_slurm_still_counts(tmp_path):
    exp = copy_study(tmp_path)
    att = exp / "grpo" / "math" / "attempts"
    (att / "attempt-0000.json").write_text('{"attempt": 0, "run": {"stage": "gr')  # torn
    (att / "attempt-0002.json").write_text("")                                        # claimed, never written
    bad = json.loads((att / "attempt-0001.json").read_text())
    bad["start_time"] = "yesterday"
    (exp / "grpo" / "code" / "attempts" / "attempt-0001.json").write_text(json.dumps(bad))
    led, _ = ledger.build(exp, STUDY_SACCT)
    kinds = sorted((Path(p.path).parent.parent.name, p.kind) for p in led.scan.problems)
    assert kinds == [("code", "invalid"), ("math", "corrupt"), ("math", "empty")]
    assert "start_time" in next(p.message for p in led.scan.problems if p.kind == "invalid")
    # math's first run has no record left, but the second names the same job: Slurm's row
    # still counts for grpo/math, with a note saying why no record matches it
    math = led.runs["grpo/math"]
    assert math.gpu_s == pytest.approx(2172.8 * 3600)
    assert any("no attempt record matches" in n for n in math.notes)
    assert led.gpu_s == pytest.approx(9507.2 * 3600)


# ------------------------------------------------------------------ reconciliation

def test_study_fixture_slurm_is_the_authority():
    led, _ = ledger.build(STUDY, STUDY_SACCT)
    assert {k: round(t.gpu_s / 3600, 1) for k, t in led.runs.items()} == {
        "grpo/math": 2172.8, "grpo/code": 3187.2, "grpo/science": 787.2, "grpo/if": 377.6, "grpo/multi": 2166.4,
        "opd/multi": 816.0, "merge/ties": 0.0}
    assert all(e.source == "slurm+job" for e in led.entries) and not led.unattributed
    math = led.runs["grpo/math"]
    assert [e.restart for e in math.entries] == [0, 1] and math.interruptions == 1
    assert math.lost_work_s == pytest.approx(1497) and math.lost_gpu_s == pytest.approx(1497 * 32)
    assert math.queued_s == pytest.approx(600 + 1800)
    assert not [n for e in led.entries for n in e.notes]


def test_real_cluster_run_reconciles_offline():
    """Records and sacct rows captured from a real run (tests/test_report_slurm.py)."""
    led, _ = ledger.build(REAL / "ledger", REAL / "sacct.psv")
    assert led.gpu_s == 72 and not led.unattributed
    code = led.runs["toy/code"]
    assert [(e.slurm_state, e.job_state) for e in code.entries] == [
        ("REQUEUED", "preempted"), ("FAILED", "killed"), ("COMPLETED", "completed")]
    killed = code.entries[1]
    rec = json.loads((REAL / "ledger/toy/code/attempts/attempt-0001.json").read_text())
    assert rec["lost_work_s"] is None and killed.lost_work_s == pytest.approx(killed.end - rec["last_checkpoint_time"])
    assert [e.restart for e in code.entries] == [0, 1, 0]  # the relaunch is a new job (49)
    assert code.entries[2].job_id == "49"
    assert len(code.notes) == 1 and "killed hard" in code.notes[0]


def _study_sacct_lines() -> list[str]:
    return STUDY_SACCT.read_text().splitlines()


def test_disagreements_are_shown(tmp_path):
    exp = copy_study(tmp_path)
    p = exp / "grpo" / "code" / "attempts" / "attempt-0000.json"
    rec = json.loads(p.read_text())
    rec["gpus"] = 16  # the job thought it had 16 GPUs
    p.write_text(json.dumps(rec))
    lines = _study_sacct_lines()
    lines = [ln for ln in lines if not ln.startswith("4103|")]  # science has no accounting row
    lines.append(lines[1].replace("4101|4101", "4101|4101", 1))  # a duplicate row: deduplicated
    later = 1767225600 + 40 * 86400
    lines.append(f"4102|4102|COMPLETED|0:0|100|{later}|{later}|{later}|{later + 100}|gres/gpu=8|gpu|1|8|other")
    lines.append("4199_3|4200|FAILED|1:0|50|1767300000|1767300000|1767300000|1767300050|gres/gpu=2|gpu|1|2|x")
    src = tmp_path / "sacct.psv"
    src.write_text("\n".join(lines) + "\n")
    # ask about array 4199 too, as a sweep whose task 3 never wrote a record would
    rec2 = json.loads((exp / "grpo" / "if" / "attempts" / "attempt-0000.json").read_text())
    rec2["array_job_id"] = "4199"
    (exp / "grpo" / "if" / "attempts" / "attempt-0000.json").write_text(json.dumps(rec2))
    led, _ = ledger.build(exp, src)
    notes = {k: t.notes for k, t in led.runs.items()}
    assert any("GPUs differ" in n and "16" in n for n in notes["grpo/code"])
    assert led.runs["grpo/code"].gpu_s == 358560 * 32  # Slurm's figure counts
    sci = led.runs["grpo/science"]
    assert [e.source for e in sci.entries] == ["job"] and "no sacct row" in sci.notes[0]
    assert sci.gpu_s == pytest.approx((88560 - 43) * 32)  # counted from its record
    assert len(led.ignored_rows) == 1 and led.ignored_rows[0].name == "other"  # reused id, 40 days later
    un = led.unattributed
    assert len(un) == 1 and un[0].gpu_s == 100 and "no run" in un[0].notes[0]
    assert led.gpu_s == pytest.approx(9507.2 * 3600 - 43 * 32 + 100)


def test_local_and_inline_runs_count_configured_gpus_from_their_records(tmp_path):
    exp = copy_study(tmp_path)
    shutil.rmtree(exp / ".submitit")  # the local executor writes no sbatch script
    for p in exp.glob("*/*/attempts/*.json"):
        rec = json.loads(p.read_text())
        rec.update(executor="local", job_id="12345", slurm_job_id=None, partition=None)
        p.write_text(json.dumps(rec))
    led, text = ledger.build(exp)  # auto: no Slurm job, so sacct is not needed
    assert text == "" and not led.sacct_used and "no Slurm jobs" in led.sacct_status
    math = led.runs["grpo/math"]
    recs = [json.loads(p.read_text()) for p in sorted((exp / "grpo/math/attempts").glob("*.json"))]
    assert math.gpu_s == pytest.approx(sum((r["end_time"] - r["start_time"]) * 32 for r in recs))
    assert math.queued_s is None and math.lost_work_s == pytest.approx(1497)


def test_inline_job_really_run_is_counted(tmp_path):
    """A real (inline) toy run of the job runtime with 2 configured GPUs, no Slurm."""
    env = {**os.environ}
    env.pop("SLURM_JOB_ID", None)
    subprocess.run([str(Path(os.sys.executable)), "-m", "m2rl.launch", "stage=toy", "toy.steps=3",
                    "cluster.gpus_per_node=2", f"paths.root={tmp_path}", "experiment.name=inline"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    led, _ = ledger.build(tmp_path / "inline")
    (e,) = led.runs["toy/math"].entries
    assert e.executor == "inline" and e.gpus == 2 and e.source == "job" and e.state == "completed"
    assert e.gpu_s == pytest.approx(2 * (e.end - e.start)) and e.steps_done == 3


def test_an_experiment_without_gpus_counts_cpu_hours(tmp_path):
    """The embedded default on a CPU machine: no job has a GPU, so CPUs count where GPUs would
    (and the report says so); one GPU job in the experiment switches it back to GPU-hours."""
    from m2rl.report import generate

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}

    def run(domain: str, *args: str) -> None:
        subprocess.run([str(Path(os.sys.executable)), "-m", "m2rl.launch", "stage=toy", "toy.steps=2",
                        f"domain={domain}", f"paths.root={tmp_path}", "experiment.name=cpu", *args],
                       cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)

    run("math", "cluster.cpus_per_task=3")
    led, _ = ledger.build(tmp_path / "cpu")
    (e,) = led.runs["toy/math"].entries
    assert led.unit == "CPU" and e.gpus == e.cpus == 3
    assert e.gpu_s == pytest.approx(3 * (e.end - e.start)) and e.gpu_s > 0
    rep = generate(tmp_path / "cpu", tmp_path / "out")
    md = rep.markdown.read_text()
    assert rep.summary["unit"] == "CPU" and md.startswith("# CPU-hour report") and "GPU hours" not in md

    run("code", "cluster.gpus_per_node=1")
    led, _ = ledger.build(tmp_path / "cpu")
    assert led.unit == "GPU" and led.runs["toy/math"].gpu_s == 0 and led.runs["toy/code"].gpu_s > 0


def _write_attempt(run_dir: str, n: int) -> None:
    from m2rl.runtime.attempts import AttemptRecorder

    rec = AttemptRecorder(run_dir)
    rec.start({"experiment": "c", "stage": "toy", "domain": "math", "run_name": "math", "arm": "toy"}, "local", 1,
              job_id=str(n))
    for step in range(1, 21):
        rec.checkpointed(step)
    rec.finish("completed", "finished", 20)


def test_many_attempts_writing_at_once_lose_nothing_and_never_tear(tmp_path, monkeypatch):
    """16 processes write attempt records of one run at once (the runtime's writer) while
    the ledger reads: never a torn record, and all 16 land with distinct numbers."""
    import multiprocessing as mp

    for k in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(k)
    run = tmp_path / "c" / "toy" / "math"
    run.mkdir(parents=True)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_attempt, args=(str(run), n)) for n in range(16)]
    for p in procs:
        p.start()
    seen = set()
    while any(p.is_alive() for p in procs):
        try:
            s = ledger.scan(tmp_path / "c")
        except NoExperiment:
            continue
        seen |= {p.kind for p in s.problems}
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert seen <= {"empty"}  # never torn or corrupt (claims publish a whole record, so not even empty)
    s = ledger.scan(tmp_path / "c")
    recs = s.runs["toy/math"].attempts
    assert not s.problems and sorted(a["attempt"] for a in recs) == list(range(16))
    assert sorted(int(a["job_id"]) for a in recs) == list(range(16))
    assert all(a["state"] == "completed" and a["steps_done"] == 20 for a in recs)
