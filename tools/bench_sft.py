"""SFT throughput of the tiny model: m2rl's SFT job (DeepSpeed) against transformers'
own Trainer on the same data and settings, as tokens per second and their ratio.

    .venv/bin/python tools/bench_sft.py [--steps 100] [--repeats 2] [--procs 1]

Both train the tiny model in fp32 on the bundled math SFT data, tokenized the same way
(assistant-only labels, no packing), with micro-batches of 8, AdamW, warmup+cosine, grad
clipping at 1.0, for the same number of steps. Tokens are the non-padding tokens of the
batches; time is the training loop only (m2rl: its loop without held-out evals or
checkpoint writes; Trainer: `train_runtime`). Runs alternate and the best of each is
kept, as other processes on the machine make single runs noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MICRO, LR, WARMUP, MAX_LEN = 8, 1e-3, 5, 512


def m2rl_run(steps: int, procs: int, stage: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        args = [sys.executable, "-m", "m2rl.launch", f"paths.root={root}", "stage=sft", f"sft.steps={steps}",
                f"sft.engine.micro_batch_size={MICRO // procs}", f"sft.engine.zero_stage={stage}",
                f"sft.optim.lr={LR}", f"sft.optim.warmup_steps={WARMUP}", f"sft.max_seq_len={MAX_LEN}",
                "sft.export=false", "sft.log_every=1000000", "run.save_every=1000000", "data.n_eval=8"]
        if procs > 1:
            args[3:3] = ["-m", f"cluster.tasks_per_node={procs}"]
        t0 = time.time()
        proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"m2rl SFT failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        done = json.loads((Path(root) / "default" / "sft" / "math" / "DONE.json").read_text())
        return {"tokens_per_s": done["tokens_per_s_this_attempt"], "train_s": done["train_s_this_attempt"],
                "engine_init_s": done["engine_init_s"], "wall_s": time.time() - t0}


def trainer_run(steps: int) -> dict:
    """transformers.Trainer in this process, on the rows m2rl trains on."""
    import torch
    from transformers import Trainer, TrainingArguments

    from m2rl.data import DataConfig, load_sft_dataset
    from m2rl.models import ModelConfig, load_model, load_tokenizer, prepare_model
    from m2rl.train.batches import collate, tokenize_all

    src = prepare_model(ModelConfig())
    tok = load_tokenizer(src, padding_side="right")
    rows = tokenize_all(tok, load_sft_dataset("math", DataConfig(), "train"), MAX_LEN)
    counted = {"tokens": 0}

    def collator(examples):
        counted["tokens"] += sum(len(e) for e in examples)
        return collate(examples, tok.pad_token_id, packed=False)

    torch.manual_seed(0)
    model = load_model(src, "float32")
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=MICRO, max_steps=steps, learning_rate=LR,
            lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=WARMUP,
            weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, max_grad_norm=1.0,
            optim="adamw_torch", logging_steps=10**6, save_strategy="no", eval_strategy="no", report_to=[],
            dataloader_num_workers=0, use_cpu=True, seed=0, disable_tqdm=True, remove_unused_columns=False)
        trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collator)
        metrics = trainer.train().metrics
    return {"tokens_per_s": counted["tokens"] / metrics["train_runtime"], "train_s": metrics["train_runtime"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--procs", type=int, default=1, help="m2rl processes (the Trainer runs in one)")
    ap.add_argument("--zero-stage", type=int, default=2)
    args = ap.parse_args()
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    ours, theirs = [], []
    for r in range(args.repeats):
        ours.append(m2rl_run(args.steps, args.procs, args.zero_stage))
        theirs.append(trainer_run(args.steps))
        print(f"run {r + 1}: m2rl {ours[-1]['tokens_per_s']:.0f} tok/s (DeepSpeed init "
              f"{ours[-1]['engine_init_s']:.2f} s), Trainer {theirs[-1]['tokens_per_s']:.0f} tok/s", flush=True)
    a, b = max(o["tokens_per_s"] for o in ours), max(t["tokens_per_s"] for t in theirs)
    print(f"\nSFT throughput, tiny model, fp32, {args.steps} steps x {MICRO} sequences, best of {args.repeats}:")
    print(f"  m2rl (DeepSpeed ZeRO-{args.zero_stage}, {args.procs} process{'es' if args.procs > 1 else ''}): "
          f"{a:9.0f} tokens/s")
    print(f"  transformers Trainer (1 process):          {b:9.0f} tokens/s")
    print(f"  ratio m2rl / Trainer: {a / b:.2f}")


if __name__ == "__main__":
    main()
