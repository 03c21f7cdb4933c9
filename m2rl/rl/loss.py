"""GRPO's arithmetic: group-normalised advantages and the token-level clipped policy loss.

Pure torch, no distributed state: the learner calls these per micro-batch and sums the
returned statistics over micro-batches and ranks.

Three log-probabilities of each response token meet in the loss:
  logp        the learner's current policy (with gradient),
  old_logp    the learner's policy before this optimizer step (the PPO ratio's
              denominator; equal to logp.detach() when one step is taken per batch),
  engine_logp what the rollout engine sampled with (vLLM's kernels, maybe bf16, maybe a
              stale weight version). Truncated importance sampling (TIS) reweights each
              token by min(exp(old_logp - engine_logp), cap) to correct for that gap.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def group_advantages(rewards, group_size: int, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO advantages for rewards laid out group after group ([g0r0, g0r1, ..., g1r0, ...]).

    A = r - mean(group), divided by the group's (unbiased) std when `scale_by_std`
    (GRPO); without it this is Dr. GRPO's estimator. A group whose rewards are all equal
    gets zero advantages (it carries no learning signal)."""
    r = torch.as_tensor(rewards, dtype=torch.float32).flatten()
    if group_size < 1 or r.numel() % group_size:
        raise ValueError(f"{r.numel()} rewards do not split into groups of {group_size}")
    g = r.view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if scale_by_std and group_size > 1:
        adv = adv / (g.std(dim=1, keepdim=True) + eps)
    return adv.flatten()


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(targets) under softmax(logits / temperature), per position: [B, T, V] -> [B, T]."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The full-distribution entropy per position: [B, T, V] -> [B, T]."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    return logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """The low-variance KL estimator exp(d) - d - 1 with d = log(p_other / p_sampled)."""
    return torch.exp(log_ratio) - log_ratio - 1


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, sum of masked per-token losses / normalizer
    stats: dict[str, float]  # sums (and max/min) over the masked tokens, to aggregate


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        *, clip_low: float, clip_high: float, normalizer: float,
                        engine_logp: torch.Tensor | None = None, tis_cap: float | None = None,
                        ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0) -> LossOutput:
    """The token-level PPO clipped objective with asymmetric clipping, as a loss.

    per token: -min(r * A, clip(r, 1 - clip_low, 1 + clip_high) * A) with r = exp(logp - old_logp),
    times the TIS weight when `engine_logp` and `tis_cap` are given, plus kl_coef * k3
    to the reference policy when `kl_coef` > 0. `advantages` is per sequence [B] or per
    token [B, T]. The masked sum is divided by `normalizer` (the batch's token count for
    token-level averaging, so that micro-batches and ranks add up to one mean).
    """
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    n = float(mask.sum())
    on = mask > 0
    stats: dict[str, float] = {
        "tokens": n,
        "clipped": float(((clipped < unclipped) & on).sum()),
        "ratio_sum": float((ratio.detach() * mask).sum()),
    }
    if engine_logp is not None:
        log_w = (old_logp - engine_logp).detach()
        w = torch.exp(log_w)
        stats["kl_engine_sum"] = float((k3(log_w) * mask).sum())
        stats["is_sum"] = float((w * mask).sum())
        stats["is_max"] = float(w[on].max()) if n else 1.0
        stats["is_min"] = float(w[on].min()) if n else 1.0
        if tis_cap:
            stats["is_truncated"] = float(((w > tis_cap) & on).sum())
            per_token = per_token * w.clamp(max=tis_cap)
    if ref_logp is not None:
        kl = k3(ref_logp - logp)
        stats["kl_ref_sum"] = float((kl.detach() * mask).sum())
        if kl_coef:
            per_token = per_token + kl_coef * kl
    masked = (per_token * mask).sum()
    stats["loss_sum"] = float(masked.detach())
    return LossOutput(masked / normalizer, stats)


def merge_stats(total: dict[str, float], part: dict[str, float]) -> dict[str, float]:
    """Add `part` into `total`: sums add, `*_max` take the max, `*_min` the min."""
    for k, v in part.items():
        if k not in total:
            total[k] = v
        elif k.endswith("_max"):
            total[k] = max(total[k], v)
        elif k.endswith("_min"):
            total[k] = min(total[k], v)
        else:
            total[k] += v
    return total
