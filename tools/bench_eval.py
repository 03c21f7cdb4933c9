"""Benchmark: the eval harness against plain vLLM, and 4 models in one eval job against 4 jobs.

    .venv/bin/python tools/bench_eval.py [--workdir /tmp/m2rl-bench-eval] [--prompts 64] [--k 4]
                                         [--max-tokens 128] [--model tiny|smollm2]

1. Generation throughput on a fixed prompt set (the first `--prompts` items of the four
   held-out splits, chat-templated, K samples each at the study's temperature 1.0 and
   top_p 0.7, `--max-tokens` tokens): `vllm.LLM.generate` with the same token ids and
   SamplingParams against the harness's `RolloutEngine.stream` (what the eval job calls:
   per-prompt sampling and seeds, streamed, stoppable), in one engine, alternating, best
   of `--repeat`; generated tokens per second. Goal: harness >= 0.9x raw vLLM.
2. Wall time of evaluating 4 models of one architecture (the model and 3 copies with
   seeded noise on its layers) through the launcher: one job (`eval.model=[a,b,c,d]`:
   one engine start, the others loaded into it) against 4 jobs one after another (an
   engine start each). Same benchmarks and sampling as 1, scoring included. Goal: one job
   <= 0.5x the wall of 4.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BENCHES = ["heldout_math", "heldout_code", "heldout_science", "heldout_if"]


def base_model(kind: str) -> Path:
    from omegaconf import OmegaConf

    from m2rl.models import ModelConfig, prepare_model
    from m2rl.sections import as_dataclass

    name = {"tiny": "tiny", "smollm2": "smollm2-135m"}[kind]
    return Path(prepare_model(as_dataclass(ModelConfig, OmegaConf.load(REPO / f"configs/model/{name}.yaml"))))


def noisy_copy(src: Path, dst: Path, seed: int) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for f in dst.glob("*.safetensors"):
        sd = load_file(f)
        g = torch.Generator().manual_seed(seed)
        save_file({k: (v + 0.05 * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype).contiguous()
                   if "layers" in k and v.dim() == 2 else v for k, v in sd.items()}, f, metadata={"format": "pt"})
    return dst


def throughput(model: Path, args) -> dict:
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from m2rl.eval import load
    from m2rl.jobs.eval.loop import item_seed
    from m2rl.rollout.engine import RolloutEngine, SamplingSpec, max_model_len
    from m2rl.train.batches import prompt_ids

    tok = AutoTokenizer.from_pretrained(model)
    items = [it for b in BENCHES for it in load(b, limit=args.prompts // len(BENCHES))]
    ids = [prompt_ids(tok, it.messages)[-512:] for it in items]
    seeds = [item_seed(0, it.id) for it in items]
    settings = SimpleNamespace(cpu_kv_cache_gb=2, enforce_eager=False, tensor_parallel_size=1,
                               gpu_memory_utilization=0.85, max_prompt_tokens=512, max_new_tokens=args.max_tokens)
    import torch

    on_gpu = torch.cuda.is_available()
    eng = RolloutEngine(str(model), settings, 0, max_model_len(str(model), settings), on_gpu=on_gpu)
    spec = SamplingSpec(args.k, 1.0, 0.7, 0, args.max_tokens)
    params = [SamplingParams(n=args.k, temperature=1.0, top_p=0.7, max_tokens=args.max_tokens, seed=s)
              for s in seeds]
    prompts = [{"prompt_token_ids": p} for p in ids]

    def raw():
        eng.llm.reset_prefix_cache()
        t0 = time.perf_counter()
        outs = eng.llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.token_ids) for out in outs for o in out.outputs), time.perf_counter() - t0

    def harness():
        t0 = time.perf_counter()
        groups = eng.stream(ids, [spec] * len(ids), seeds, on_done=lambda i, g: None, should_stop=lambda: False)
        return sum(len(c["ids"]) for g in groups for c in g), time.perf_counter() - t0

    raw()  # warm-up (compiles)
    best = {"raw": 0.0, "harness": 0.0}
    tokens = {}
    for _ in range(args.repeat):
        for name, fn in (("raw", raw), ("harness", harness)):
            n, dt = fn()
            tokens[name] = n
            best[name] = max(best[name], n / dt)
    eng.close()
    return {"prompts": len(ids), "k": args.k, "tokens": tokens, "tok_s": best,
            "ratio": best["harness"] / best["raw"], "device": "GPU" if on_gpu else "CPU"}


def wall_of(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def one_vs_four(models: list[Path], work: Path, args) -> dict:
    common = [sys.executable, "-m", "m2rl.launch", "-m", "stage=eval", f"paths.root={work}",
              f"eval.benchmarks=[{','.join(BENCHES)}]", f"eval.limit={args.prompts // len(BENCHES)}",
              f"eval.samples={args.k}", f"eval.max_tokens={args.max_tokens}", "eval.reward_workers=2"]
    one = wall_of([*common, "experiment.name=one", f"eval.model=[{','.join(map(str, models))}]"], REPO)
    done = json.loads(next((work / "one" / "eval").glob("*+*/DONE.json")).read_text())
    four = sum(wall_of([*common, "experiment.name=four", f"eval.model={m}"], REPO) for m in models)
    return {"one_job_s": one, "four_jobs_s": four, "ratio": one / four, "engine_starts": done["engine_starts"],
            "weight_loads": done["weight_loads"], "weight_load_s": done["weight_load_s"],
            "engine_start_s": done["engine_start_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/m2rl-bench-eval")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model", default="tiny", choices=["tiny", "smollm2"])
    args = ap.parse_args()
    work = Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    base = base_model(args.model)
    t = throughput(base, args)
    print(f"[throughput] {t['prompts']} prompts x K={t['k']}, up to {args.max_tokens} tokens, {args.model} on "
          f"{t['device']}: raw vllm.LLM.generate {t['tok_s']['raw']:.0f} tok/s ({t['tokens']['raw']} tokens), "
          f"harness stream {t['tok_s']['harness']:.0f} tok/s ({t['tokens']['harness']} tokens): "
          f"{t['ratio']:.2f}x (goal >= 0.9x)", flush=True)
    models = [base] + [noisy_copy(base, work / f"model-{i}", i) for i in (1, 2, 3)]
    w = one_vs_four(models, work, args)
    print(f"[4 models] one job {w['one_job_s']:.1f} s ({w['engine_starts']} engine start, {w['engine_start_s']:.1f} s; "
          f"{w['weight_loads']} weight loads, {w['weight_load_s']:.2f} s) vs 4 jobs {w['four_jobs_s']:.1f} s: "
          f"{w['ratio']:.2f}x (goal <= 0.5x)")


if __name__ == "__main__":
    main()
