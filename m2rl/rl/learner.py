"""The RL learner: a DeepSpeed engine (built by m2rl.train) taking clipped policy-gradient
steps (GRPO's, and any other advantage estimator's).

Each learner holds one data-parallel shard of the rollout batch. A step splits the shard
into `mini_batches` optimizer steps; each mini-batch into micro-batches (m2rl.rl.batching:
by row count, or by `engine.max_tokens_per_micro_batch`), every learner running as many
forward/backward passes as the busiest one (pad rows fill the gap, so the collectives
line up). The learner owns the accumulation boundary (DeepSpeed's
`set_gradient_accumulation_boundary`), and each micro-batch's loss is its masked token sum
divided by the mini-batch's size over all learners: the passes add up to one token-level
mean, whatever the grouping.

Log-probs come from m2rl.rl.logprobs (response positions only, the output head in chunks):
no `[B, T, V]` tensor is ever built. Under ZeRO-3 the model is loaded partitioned
(m2rl.train.engine.partitioned_init), never as a full copy on every rank.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from m2rl.rl import loss as L
from m2rl.rl.batching import micro_batches, pack, pad_row, split
from m2rl.rl.logprobs import response_logprobs
from m2rl.sections import as_dataclass

log = logging.getLogger("m2rl.rl")


class Learner:
    def __init__(self, model_dir: str, gcfg, total_steps: int, seqs_per_rank: int, pad_id: int):
        from m2rl.models import load_model
        from m2rl.train.config import EngineConfig, OptimConfig
        from m2rl.train.engine import build_engine, partitioned_init

        self.g = gcfg
        self.pad_id = pad_id
        self.mini_batches = max(1, int(gcfg.mini_batches))
        eng = as_dataclass(EngineConfig, gcfg.engine)
        self.micro_batch_size = max(1, min(int(eng.micro_batch_size), -(-seqs_per_rank // self.mini_batches)))
        self.max_tokens = int(eng.max_tokens_per_micro_batch)
        self.chunk_tokens = int(gcfg.logprob_chunk_tokens)
        # the learner sets the accumulation boundary itself: DeepSpeed must not rescale by 1/grad_accum
        eng = dataclasses.replace(eng, micro_batch_size=self.micro_batch_size, grad_accum=1)
        optim = as_dataclass(OptimConfig, gcfg.optim)
        with partitioned_init(eng, optim):
            model = load_model(model_dir, "float32")
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        self.ref = None
        if float(gcfg.kl_coef) > 0:  # its own full copy (no gradient, no optimizer state)
            self.ref = load_model(model_dir, "float32").eval().requires_grad_(False)
        self.engine, self.info = build_engine(model, eng, optim, total_steps * self.mini_batches)
        self.device = self.engine.device
        if self.ref is not None:
            self.ref.to(self.device, dtype=next(self.engine.module.parameters()).dtype)

    @property
    def module(self):
        return self.engine.module

    def logprobs(self, model, batch: dict, with_entropy: bool = False):
        """Per-token log-probs [B, T-1] at the batch's response positions (and entropy)."""
        return response_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["mask"],
                                 float(self.g.temperature), with_entropy, self.chunk_tokens)

    def _normalizer(self, mini_tokens: float, mini_seqs: int, world: int) -> float:
        """What a micro-batch's masked token sum is divided by, so that DeepSpeed's 1/world
        averaging adds up to the configured mean over the mini-batch."""
        if self.g.loss_agg == "seq_sum_norm":  # Dr. GRPO: a constant per sequence
            total = max(1, mini_seqs) * float(self.g.max_new_tokens)
        else:
            total = max(1.0, mini_tokens)
        return total / world

    def plan(self, items: list[dict]) -> list[list[list[dict]]]:
        """This shard's micro-batches per mini-batch, padded to the busiest learner's count."""
        from m2rl.train.distributed import all_reduce

        plans = [micro_batches(mb, self.micro_batch_size, self.max_tokens) for mb in split(items, self.mini_batches)]
        counts = all_reduce([float(max(1, len(p))) for p in plans], op="max")
        return [p + [[pad_row(self.pad_id)]] * (int(n) - len(p)) for p, n in zip(plans, counts)]

    def train_step(self, items: list[dict], mini_tokens: list[float], mini_seqs: list[int], world: int) -> dict:
        """One rollout batch (this rank's shard) -> `mini_batches` optimizer steps.
        `mini_tokens[m]` / `mini_seqs[m]`: mini-batch m's size over all learners."""
        eng = self.engine
        eng.train()
        stats: dict[str, float] = {}
        plans = self.plan(items)
        old = None
        if self.mini_batches > 1:  # the proximal policy: these weights, before any update
            old = [[self._no_grad_logp(micro) for micro in plan] for plan in plans]
        for m, plan in enumerate(plans):
            norm = self._normalizer(mini_tokens[m], mini_seqs[m], world)
            for k, micro in enumerate(plan):
                eng.set_gradient_accumulation_boundary(k == len(plan) - 1)
                batch = pack(micro, self.pad_id, self.device)
                logp, ent = self.logprobs(eng, batch, with_entropy=True)
                old_logp = logp.detach() if old is None else old[m][k].to(logp.device)
                ref_logp = None
                if self.ref is not None:
                    with torch.no_grad():
                        ref_logp, _ = self.logprobs(self.ref, batch)
                out = L.clipped_policy_loss(
                    logp, old_logp, batch["adv"], batch["mask"], clip_low=float(self.g.clip_low),
                    clip_high=float(self.g.clip_high), normalizer=norm, engine_logp=batch["engine_logp"],
                    tis_cap=float(self.g.tis_cap) if self.g.tis else None, ref_logp=ref_logp,
                    kl_coef=float(self.g.kl_coef))
                out.stats["entropy_sum"] = float((ent * batch["mask"]).sum())
                L.merge_stats(stats, out.stats)
                eng.backward(out.loss)
                eng.step()
        from m2rl.train.engine import current_lr, grad_norm

        stats["lr"] = current_lr(eng)
        gn = grad_norm(eng)
        if gn is not None:
            stats["grad_norm"] = gn
        return stats

    @torch.no_grad()
    def _no_grad_logp(self, micro: list[dict]) -> torch.Tensor:
        logp, _ = self.logprobs(self.engine, pack(micro, self.pad_id, self.device))
        return logp.detach()
