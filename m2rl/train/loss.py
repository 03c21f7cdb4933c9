"""Token-level losses of a causal LM on a collated batch (see batches.collate)."""
from __future__ import annotations

import torch

from m2rl.train.batches import IGNORE


def forward_logits(model, batch: dict) -> torch.Tensor:
    """Logits for every position (model: a DeepSpeed engine or an HF module)."""
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    return model(**kwargs, use_cache=False).logits


def nll_sum(model, batch: dict) -> tuple[torch.Tensor, int]:
    """(summed negative log-likelihood of the labelled tokens, how many there are)."""
    logits = forward_logits(model, batch)
    labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                             labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())
