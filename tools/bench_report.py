"""Benchmark: report generation over a ledger of 10,000 attempts (printed, not a test).

    .venv/bin/python tools/bench_report.py [--attempts 10000] [--runs 200] [--keep DIR]

Writes a synthetic experiment (runs in every arm, each a chain of preempted attempts of
one requeued Slurm job, 4 nodes x 8 GPUs) and the matching `sacct -D` text, then times
the scan of the attempt files, the reconciliation, and the whole report (plots, HTML).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m2rl import ledger  # noqa: E402
from m2rl.ledger import sacct  # noqa: E402
from m2rl.report import generate  # noqa: E402

KINDS = [("grpo", "math"), ("grpo", "code"), ("grpo", "science"), ("grpo", "if"), ("grpo", "multi"),
         ("opd", "multi"), ("merge", "math")]
ARMS = {("grpo", "multi"): "mixed", ("opd", "multi"): "opd"}


def make(root: Path, n_attempts: int, n_runs: int) -> tuple[Path, Path]:
    exp = root / "bench"
    lines = ["|".join(sacct.FIELDS)]
    per_run = n_attempts // n_runs
    t = 1767225600.0
    gpus = 32
    tres = f"billing=256,cpu=256,gres/gpu={gpus},mem=2000G,node=4"
    for r in range(n_runs):
        stage, domain = KINDS[r % len(KINDS)]
        name = f"{domain}-{r:04d}"
        rd = exp / stage / name
        (rd / "attempts").mkdir(parents=True)
        (rd / "config.yaml").write_text(
            f"stage: {{name: {stage}}}\ndomain: {{name: {domain}}}\ncluster: {{nodes: 4, gpus_per_node: 8}}\n"
            f"{stage}: {{prompts_per_step: 128, group_size: 16}}\n")
        job = 10000 + r
        step = 0
        for a in range(per_run):
            last = a == per_run - 1
            submit, start = t, t + 60
            elapsed = 3600
            end = start + elapsed
            steps = 0 if stage == "merge" else 10
            rec = {"attempt": a, "schema": 1, "executor": "slurm", "job_id": str(job), "slurm_job_id": str(job),
                   "array_job_id": None, "array_task_id": None, "restart_count": a, "partition": "gpu",
                   "nodes": 4, "gpus": gpus, "cpus": 256, "world_size": 32,
                   "run": {"experiment": "bench", "stage": stage, "domain": domain, "run_name": name,
                           "arm": ARMS.get((stage, domain), "separate"), "run_dir": str(rd)},
                   "start_time": start + 5, "end_time": end - 2, "heartbeat": end - 2,
                   "state": "completed" if last else "preempted", "step_start": step, "step_end": step + steps,
                   "first_step_time": start + 30, "last_checkpoint_step": step + steps,
                   "last_checkpoint_time": end - 300, "lost_work_s": 0.0 if last else 298.0}
            (rd / "attempts" / f"attempt-{a:04d}.json").write_text(json.dumps(rec))
            state = "COMPLETED" if last else "PREEMPTED"
            lines.append("|".join(map(str, (job, job, state, "0:0", elapsed, int(submit), int(submit), int(start),
                                            int(end), tres, "gpu", 4, 256, f"m2rl-{stage}"))))
            step += steps
            t = end
        (rd / "DONE.json").write_text(json.dumps({"step": step}))
    src = root / "sacct.psv"
    src.write_text("\n".join(lines) + "\n")
    return exp, src


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--keep", help="write the experiment here and keep it")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="m2rl-bench-"))
    try:
        t0 = time.perf_counter()
        exp, src = make(root, args.attempts, args.runs)
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        s = ledger.scan(exp)
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = sacct.parse(src.read_text())
        t_parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        led = ledger.reconcile(s, rows, "bench")
        t_rec = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep = generate(exp, root / "out", src)
        t_all = time.perf_counter() - t0
        n = sum(len(r.attempts) for r in s.runs.values())
        print(f"ledger: {n} attempts in {len(s.runs)} runs, {len(rows)} sacct rows, "
              f"{led.gpu_s / 3600:,.0f} GPU-hours; mixed/separate = {rep.summary['ratios']['mixed_over_separate_rl']:.1%}")
        print(f"  write synthetic ledger   {t_make:6.2f} s")
        print(f"  scan attempt files       {t_scan:6.2f} s  ({t_scan / n * 1e6:.0f} us per attempt)")
        print(f"  parse sacct text         {t_parse:6.2f} s")
        print(f"  reconcile                {t_rec:6.2f} s")
        print(f"  full report (scan, reconcile, plots, md, html, csv, json)  {t_all:6.2f} s")
        print(f"  report.html {rep.files['html'].stat().st_size / 1e6:.1f} MB, ledger.csv "
              f"{rep.files['csv'].stat().st_size / 1e6:.1f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
