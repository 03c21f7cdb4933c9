"""How a rollout batch becomes learner work: shards per learner, mini-batches per
optimizer step, micro-batches per forward, and the padded tensors of one micro-batch.

Micro-batches are formed either by a row count (`micro_batch_size`, rows in order) or by
a token budget (`max_tokens`, the peers' dynamic batching): rows sorted by length, each
micro-batch as many rows as fit `rows x longest row <= max_tokens`, so that short
responses do not pay for the longest one's padding. A row longer than the budget goes
alone. Either way every row lands in exactly one micro-batch, and the loss sums over
micro-batches, so the result does not depend on the grouping (up to float rounding).
"""
from __future__ import annotations

import numpy as np
import torch


def shard(items: list, rank: int, world: int) -> list:
    return items[rank::world]


def split(items: list, parts: int) -> list[list]:
    """`parts` contiguous, near-equal chunks (some may be empty)."""
    n = len(items)
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(parts)]


def row_tokens(item: dict) -> int:
    return len(item["prompt"]) + len(item["ids"])


def micro_batches(items: list[dict], micro_batch_size: int, max_tokens: int = 0) -> list[list[dict]]:
    """Micro-batches of `items`: by token budget when `max_tokens` > 0, else runs of
    `micro_batch_size` rows."""
    if max_tokens <= 0:
        size = max(1, int(micro_batch_size))
        return [items[i:i + size] for i in range(0, len(items), size)]
    out: list[list[dict]] = []
    cur: list[dict] = []
    for it in sorted(items, key=row_tokens, reverse=True):
        # sorted longest first, so the first row of `cur` is its longest
        if cur and (len(cur) + 1) * row_tokens(cur[0]) > max_tokens:
            out.append(cur)
            cur = []
        cur.append(it)
    if cur:
        out.append(cur)
    return out


def pad_row(pad_id: int) -> dict:
    """A one-token row that contributes nothing (its mask is zeroed): keeps every learner
    at the same number of forward/backward passes."""
    return {"prompt": np.array([pad_id]), "ids": np.array([pad_id]), "logprobs": np.zeros(1, np.float32),
            "adv": 0.0, "dummy": True}


def pack(items: list[dict], pad_id: int, device) -> dict:
    """Right-padded prompt+response rows; masks and per-token values aligned with the
    next-token targets (position t predicts token t+1)."""
    lens = [row_tokens(it) for it in items]
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
        if not it.get("dummy"):
            mask[b, p - 1:p - 1 + r] = 1
        eng[b, p - 1:p - 1 + r] = it["logprobs"]
        adv[b] = it["adv"]
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {"input_ids": t(ids), "attention_mask": t(attn), "mask": t(mask), "engine_logp": t(eng), "adv": t(adv)}
