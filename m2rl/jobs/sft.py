"""The SFT body: chat data, loss on assistant tokens only, a DeepSpeed engine, resumable
through the job runtime, TensorBoard scalars and a final Hugging Face export to
`<run_dir>/export/` (where RL, merge and eval jobs start from).

The loss of an optimizer step is the mean over every labelled token of the global batch
(all micro-batches of all ranks), whatever the world size and accumulation: each
micro-batch's summed loss is divided by the step's global token count, which every rank
knows in advance from the deterministic sampler, and scaled back by the
accumulation x world factor that DeepSpeed's gradient averaging divides by.
"""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

from m2rl.errors import ConfigError
from m2rl.runtime import JobContext
from m2rl.sections import resolve_init
from m2rl.stage import Layout, Stage
from m2rl.train.config import OPTIMIZERS, PRECISIONS, SCHEDULES, SFTConfig

log = logging.getLogger("m2rl.sft")
EXPORT_DIR = "export"


def validate(cfg, layout: Layout) -> None:
    s = cfg.sft
    e, o = s.engine, s.optim

    def check(ok: bool, field: str, problem: str, fix: str) -> None:
        if not ok:
            raise ConfigError(f"sft.{field}", problem, fix)

    check(s.steps >= 0, "steps", f"must be >= 0, got {s.steps}", "set sft.steps=0 to train for sft.epochs")
    check(s.steps > 0 or s.epochs > 0, "epochs", f"must be > 0 when sft.steps=0, got {s.epochs}", "e.g. sft.epochs=1")
    check(s.max_seq_len >= 8, "max_seq_len", f"must be >= 8, got {s.max_seq_len}", "e.g. sft.max_seq_len=512")
    check(s.eval_every >= 0, "eval_every", "must be >= 0", "0 evaluates at the start and the end only")
    check(s.log_every >= 1, "log_every", "must be >= 1", "e.g. sft.log_every=10")
    resolve_init(cfg, s.init_from, "sft.init_from")
    check(e.zero_stage in (0, 1, 2, 3), "engine.zero_stage", f"ZeRO stage {e.zero_stage} does not exist",
          "use 0, 1, 2 or 3")
    check(e.precision in PRECISIONS, "engine.precision", f"unknown precision {e.precision!r}",
          f"use one of {', '.join(PRECISIONS)}")
    check(e.optimizer in OPTIMIZERS, "engine.optimizer", f"unknown optimizer {e.optimizer!r}",
          "torch (AdamW, no compile) or deepspeed (DeepSpeed's Adam kernels)")
    check(e.micro_batch_size >= 1, "engine.micro_batch_size", "must be >= 1", "e.g. 8")
    check(e.grad_accum >= 1, "engine.grad_accum", "must be >= 1", "e.g. 1")
    check(e.max_tokens_per_micro_batch == 0, "engine.max_tokens_per_micro_batch",
          "token-budget micro-batches are an RL learner setting; SFT batches by rows",
          "leave it at 0 and bound SFT rows with sft.max_seq_len (sft.packing=true fills them)")
    check(not (e.offload_optimizer and e.zero_stage == 0), "engine.offload_optimizer",
          "optimizer offload needs ZeRO stage 1, 2 or 3", "set sft.engine.zero_stage=2 or offload_optimizer=false")
    check(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}", "e.g. sft.optim.lr=1e-4")
    check(o.schedule in SCHEDULES, "optim.schedule", f"unknown schedule {o.schedule!r}",
          f"use one of {', '.join(SCHEDULES)}")
    check(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "must lie in [0, 1]", "e.g. 0.1")
    check(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0", "0 disables clipping")
    check(len(o.betas) == 2, "optim.betas", "needs two values", "e.g. [0.9, 0.95]")


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rows(tokenizer, samples, max_len: int, packing: bool, seed: int):
    from m2rl.train.batches import pack, tokenize_all

    examples = tokenize_all(tokenizer, samples, max_len)
    if packing:
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)  # pack a shuffled stream, not the source order
        examples = pack([examples[i] for i in order], max_len)
    return examples


def evaluate(engine, rows, micro: int, pad_id: int) -> float:
    """Mean loss per labelled token over `rows`, sharded over ranks. Every rank runs the
    same number of forwards (ZeRO-3 gathers parameters collectively inside them)."""
    import torch
    import torch.distributed as td

    from m2rl.train.batches import collate
    from m2rl.train.distributed import all_reduce, device, rank
    from m2rl.train.loss import nll_sum

    world = td.get_world_size() if td.is_initialized() else 1
    me = rank()
    per_round = micro * world
    total, count = 0.0, 0
    engine.eval()
    with torch.no_grad():
        for start in range(0, len(rows), per_round):
            mine = rows[start + me * micro: start + (me + 1) * micro]
            batch = collate(mine or rows[:1], pad_id, packed=False)
            loss, n = nll_sum(engine, {k: v.to(device()) for k, v in batch.items()})
            if mine:
                total, count = total + float(loss), count + n
    engine.train()
    total, count = all_reduce([total, count])
    return total / max(count, 1)


def run(ctx: JobContext) -> dict:
    import torch

    from m2rl.data import load_sft_dataset
    from m2rl.models import load_model, load_tokenizer
    from m2rl.sections import data_config, start_model
    from m2rl.train.batches import StepSampler, collate
    from m2rl.train.checkpoint import load_engine, save_engine
    from m2rl.train.distributed import all_reduce, device, init_distributed
    from m2rl.train.engine import build_engine, current_lr, grad_norm
    from m2rl.train.export import export_hf
    from m2rl.train.loss import nll_sum
    from m2rl.train.progress import TrainLogger

    cfg, s = ctx.cfg, ctx.cfg.sft
    seed = int(cfg.experiment.seed)
    t_start = time.time()
    env = init_distributed(s.engine.dist_timeout_s)
    _seed_all(seed)
    dev = device()

    src = start_model(cfg, cfg.sft.init_from, "sft.init_from")
    tokenizer = load_tokenizer(src, padding_side="right")
    model = load_model(src, dtype="float32")  # fp32 master weights; DeepSpeed casts for bf16
    data = data_config(cfg)
    train_rows = _rows(tokenizer, load_sft_dataset(cfg.domain.name, data, "train"), s.max_seq_len, s.packing, seed)
    eval_rows = _rows(tokenizer, load_sft_dataset(cfg.domain.name, data, "eval"), s.max_seq_len, False, seed)
    pad_id = tokenizer.pad_token_id

    e = s.engine
    sampler = StepSampler(len(train_rows), seed, e.micro_batch_size, e.grad_accum, env.world_size, env.rank)
    total_steps = int(s.steps) or max(1, math.ceil(s.epochs * len(train_rows) / sampler.global_batch))
    engine, info = build_engine(model, e, s.optim, total_steps)

    step, history = 0, {}
    if (ck := ctx.resume()) is not None:
        client = load_engine(engine, ck.path)
        sampler.load_state_dict(client["sampler"])
        step, history = int(client["step"]), dict(client.get("history", {}))
    elif env.is_writer:
        log.info("SFT: %d train rows (%s), %d eval rows, %d steps of %d rows, %s", len(train_rows),
                 "packed" if s.packing else "unpacked", len(eval_rows), total_steps, sampler.global_batch,
                 f"model {src}")

    logger = TrainLogger(ctx.tb_dir, total_steps, enabled=env.is_writer, log_every=s.log_every,
                         initial_step=step)
    if "eval_loss_start" not in history:
        history["eval_loss_start"] = evaluate(engine, eval_rows, e.micro_batch_size, pad_id)
        logger.log(0, {"loss": history["eval_loss_start"]}, section="eval")

    def save(d: Path) -> None:
        save_engine(engine, d, {"step": step, "sampler": sampler.state_dict(), "history": history})

    loss = float("nan")
    train_s, train_tokens = 0.0, 0  # this attempt's training loop (no eval, no checkpoint writes)
    while step < total_steps:
        t0 = time.perf_counter()
        every_rank = sampler.advance()
        step_rows = [i for r in every_rank for mb in r for i in mb]
        targets = sum(train_rows[i].n_targets for i in step_rows)
        tokens = sum(len(train_rows[i]) for i in step_rows)
        scale = env.world_size * e.grad_accum / max(targets, 1)
        lr = current_lr(engine)  # the rate this step uses (the scheduler moves on at its end)
        loss_sum = 0.0
        for micro in every_rank[env.rank]:
            batch = {k: v.to(dev) for k, v in collate([train_rows[i] for i in micro], pad_id, s.packing).items()}
            part, _ = nll_sum(engine, batch)
            engine.backward(part * scale)
            engine.step()
            loss_sum += float(part.detach())
        step += 1
        loss = all_reduce([loss_sum])[0] / max(targets, 1)
        dt = time.perf_counter() - t0
        scalars = {"loss": loss, "lr": lr, "grad_norm": grad_norm(engine),
                   "tokens_per_s": tokens / dt if dt > 0 else 0.0, "epoch": sampler.epoch}
        logger.log(step, scalars)
        train_s, train_tokens = train_s + time.perf_counter() - t0, train_tokens + tokens
        history["last_loss"] = loss
        if s.eval_every and step % s.eval_every == 0 and step < total_steps:
            logger.log(step, {"loss": evaluate(engine, eval_rows, e.micro_batch_size, pad_id)}, section="eval")
        ctx.boundary(step, save)

    eval_loss = evaluate(engine, eval_rows, e.micro_batch_size, pad_id)
    logger.log(step, {"loss": eval_loss}, section="eval")
    logger.close()
    result = {"step": step, "loss": history.get("last_loss", loss), "eval_loss_start": history["eval_loss_start"],
              "eval_loss": eval_loss, "engine_init_s": round(info.init_s, 3), "train_s_this_attempt": round(train_s, 3),
              "tokens_per_s_this_attempt": round(train_tokens / train_s, 1) if train_s else None,
              "world_size": env.world_size, "zero_stage": info.zero_stage, "precision": info.precision}
    if s.export:
        out = ctx.run_dir / EXPORT_DIR
        dtype = torch.bfloat16 if info.precision == "bf16" else torch.float16 if info.precision == "fp16" else None
        export_hf(engine, out, tokenizer, dtype=dtype)
        result["export"] = str(out)
    if env.is_writer:
        log.info("SFT done in %.1f s: eval loss %.4f -> %.4f", time.time() - t_start, history["eval_loss_start"],
                 eval_loss)
    return result


STAGE = Stage("sft", run, schema=SFTConfig, validate=validate,
              reads=("sft.init_from, or the model config's model", "the domain's SFT chat data (data.*)"),
              writes=(f"{EXPORT_DIR}/: the final model in Hugging Face format (where RL, merge and eval start)",
                      "tb/: TensorBoard scalars"))
