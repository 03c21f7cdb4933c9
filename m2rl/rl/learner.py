"""The RL learner: a DeepSpeed engine (built by m2rl.train) taking clipped policy-gradient
steps (GRPO's, and any other advantage estimator's).

Each learner holds one data-parallel shard of the rollout batch. A step splits the shard
into `mini_batches` optimizer steps of `grad_accum` micro-batches each (DeepSpeed scales by
1/grad_accum and averages over learners; the loss is pre-scaled so that the sum is one
token-level mean over the whole batch).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math

import numpy as np
import torch

from m2rl.rl import loss as L
from m2rl.sections import as_dataclass

log = logging.getLogger("m2rl.rl")


def shard(items: list, rank: int, world: int) -> list:
    return items[rank::world]


def split(items: list, parts: int) -> list[list]:
    """`parts` contiguous, near-equal chunks (some may be empty)."""
    n = len(items)
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(parts)]


def pack(items: list[dict], pad_id: int, device) -> dict:
    """Right-padded prompt+response rows; masks and per-token values aligned with the
    next-token targets (position t predicts token t+1)."""
    lens = [len(it["prompt"]) + len(it["ids"]) for it in items]
    T = max(lens)
    B = len(items)
    ids = np.full((B, T), pad_id, dtype=np.int64)
    attn = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T - 1), dtype=np.float32)
    eng = np.zeros((B, T - 1), dtype=np.float32)
    adv = np.zeros((B,), dtype=np.float32)
    for b, it in enumerate(items):
        p, r = len(it["prompt"]), len(it["ids"])
        ids[b, :p] = it["prompt"]
        ids[b, p:p + r] = it["ids"]
        attn[b, :p + r] = 1
        mask[b, p - 1:p - 1 + r] = 1
        eng[b, p - 1:p - 1 + r] = it["logprobs"]
        adv[b] = it["adv"]
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {"input_ids": t(ids), "attention_mask": t(attn), "mask": t(mask), "engine_logp": t(eng), "adv": t(adv)}


class Learner:
    def __init__(self, model_dir: str, gcfg, total_steps: int, seqs_per_rank: int, pad_id: int):
        from m2rl.models import load_model
        from m2rl.train.config import EngineConfig, OptimConfig
        from m2rl.train.engine import build_engine

        self.g = gcfg
        self.pad_id = pad_id
        self.mini_batches = max(1, int(gcfg.mini_batches))
        per_mini = max(1, math.ceil(seqs_per_rank / self.mini_batches))
        eng = as_dataclass(EngineConfig, gcfg.engine)
        mbs = max(1, min(int(eng.micro_batch_size), per_mini))
        self.grad_accum = math.ceil(per_mini / mbs)
        eng = dataclasses.replace(eng, micro_batch_size=mbs, grad_accum=self.grad_accum)
        optim = as_dataclass(OptimConfig, gcfg.optim)
        model = load_model(model_dir, "float32")
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        self.ref = None
        if float(gcfg.kl_coef) > 0:
            self.ref = copy.deepcopy(model).eval().requires_grad_(False)
        self.engine, self.info = build_engine(model, eng, optim, total_steps * self.mini_batches)
        self.device = self.engine.device
        if self.ref is not None:
            self.ref.to(self.device, dtype=next(self.engine.module.parameters()).dtype)

    @property
    def module(self):
        return self.engine.module

    def _forward_logp(self, model, batch: dict, with_entropy: bool = False):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, :-1]
        targets = batch["input_ids"][:, 1:]
        logp = L.token_logprobs(logits, targets, float(self.g.temperature))
        ent = None
        if with_entropy:
            with torch.no_grad():
                ent = L.entropy(logits.detach(), float(self.g.temperature))
        return logp, ent

    def _normalizer(self, mini_tokens: float, mini_seqs: int, world: int) -> float:
        """What a micro-batch's masked token sum is divided by, so that DeepSpeed's
        1/grad_accum and 1/world scaling add up to the configured mean over the batch."""
        if self.g.loss_agg == "seq_sum_norm":  # Dr. GRPO: a constant per sequence
            total = max(1, mini_seqs) * float(self.g.max_new_tokens)
        else:
            total = max(1.0, mini_tokens)
        return total / (self.grad_accum * world)

    def train_step(self, items: list[dict], mini_tokens: list[float], mini_seqs: list[int], world: int) -> dict:
        """One rollout batch (this rank's shard) -> `mini_batches` optimizer steps.
        `mini_tokens[m]` / `mini_seqs[m]`: mini-batch m's size over all learners."""
        eng = self.engine
        eng.train()
        stats: dict[str, float] = {}
        minis = split(items, self.mini_batches)
        old = None
        if self.mini_batches > 1:  # the proximal policy: these weights, before any update
            old = [self._no_grad_logp(eng, mb) for mb in minis]
        for m, mb in enumerate(minis):
            norm = self._normalizer(mini_tokens[m], mini_seqs[m], world)
            micros = split(mb, self.grad_accum)
            for k, micro in enumerate(micros):
                if not micro:  # keep DeepSpeed's micro-step count: a zero-loss pass on a pad row
                    micro = [{"prompt": np.array([self.pad_id]), "ids": np.array([self.pad_id]),
                              "logprobs": np.zeros(1, np.float32), "adv": 0.0, "dummy": True}]
                batch = pack(micro, self.pad_id, self.device)
                if any(it.get("dummy") for it in micro):
                    batch["mask"].zero_()
                logp, ent = self._forward_logp(eng, batch, with_entropy=True)
                old_logp = logp.detach() if old is None else old[m][k].to(logp.device)
                ref_logp = None
                if self.ref is not None:
                    with torch.no_grad():
                        ref_logp, _ = self._forward_logp(self.ref, batch)
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
    def _no_grad_logp(self, eng, mini: list[dict]) -> list[torch.Tensor]:
        out = []
        for micro in split(mini, self.grad_accum):
            if not micro:
                out.append(torch.zeros(1, 1))
                continue
            logp, _ = self._forward_logp(eng, pack(micro, self.pad_id, self.device))
            out.append(logp.detach())
        return out
