"""What each merge method computes, for one chunk of one tensor, under each semantics.

Notation: base b, models m_i with weights w_i, task vectors δ_i = m_i − b, λ = `lam`.

| method | semantics=paper (the study's code) | semantics=mergekit |
|---|---|---|
| average | Σ w_i m_i / Σ w_i | same (`linear`; normalize=false: Σ w_i m_i) |
| task_arithmetic | b + λ Σ w_i δ_i | same; normalize=true divides by Σ w_i |
| ties | trim each δ_i to |δ_i| ≥ its k-th largest magnitude over the **whole flattened task vector** (k = ⌊D·density⌋+1, ties kept, as the TIES reference's `kthvalue` rule); elect γ = sign Σ w_i τ_i (0 → +); disjoint mean Σ w_i τ_i [sign w_iτ_i = γ] / #agreeing; × λ | trim each δ_i to exactly max(1, ⌊n·density⌋) largest magnitudes **per tensor**; same election; Σ w_i τ_i [agree] / Σ w_i [agree] (normalize, default on); × λ |
| dare_ta | τ_i = δ_i·Bernoulli(1−p)/(1−p); b + λ Σ w_i τ_i | τ_i = δ_i·Bernoulli(1−p) rescaled to δ_i's L1 norm per tensor; b + λ Σ w_i τ_i |
| dare_ties | DARE, then TIES as above (global trim by `density`) | DARE (L1 rescale), then sign election, no trim, normalize default off |
| sce | select_topk per tensor by variance across models; per-tensor weights ω_i = mean(τ_i²)/Σ mean(τ²) (uniform if all 0); erase entries whose sign differs from sign Σ τ_i; Σ ω_i τ_i [agree] / Σ ω_i [agree] | same, with mergekit's guards (uniform ω when Σ mean(τ²) < 1e-6, divisor clamped to ≥ 1e-6) |

mergekit's names: average = `linear`, dare_ta = `dare_linear`; SCE takes no weights, and
λ on SCE (default 1) is ours. Where entries tie at a tensor's k-th magnitude, mergekit
keeps exactly k in the order of torch's unstable argsort; we keep the first ones in
flat order, so the two can differ at those entries only.

`paper` follows the study's description (global top-20% TIES, exact
1/(1−p) DARE, unweighted λ-scaled TA, mean-square SCE weights), with the details the
notes leave open taken from the TIES and DARE reference implementations (the `kthvalue`
trim rule, the disjoint mean); a zero sum elects + (the TIES reference gives it the
model-wide majority sign: the two differ only where an entry's task vectors cancel
exactly).

DARE's masks come from a counter-style seed: (seed, model name, tensor name, block of
65536 elements), so they do not depend on the order tensors are visited, on chunking,
or on which other models are merged.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

RNG_BLOCK = 1 << 16
# mergekit's defaults for `normalize`, per method
MERGEKIT_NORMALIZE = {"average": True, "task_arithmetic": False, "ties": True, "dare_ta": False, "dare_ties": False}


@dataclass(frozen=True)
class Recipe:
    method: str
    semantics: str
    names: tuple[str, ...]
    weights: tuple[float, ...]
    lam: float = 1.0
    density: float = 0.2
    drop_p: float = 0.2
    select_topk: float = 1.0
    normalize: bool | None = None
    seed: int = 0

    @property
    def paper(self) -> bool:
        return self.semantics == "paper"

    @property
    def dare(self) -> bool:
        return self.method in ("dare_ta", "dare_ties") and self.drop_p > 0

    @property
    def consensus(self) -> bool:
        return self.method in ("ties", "dare_ties")

    @property
    def trim(self) -> str | None:
        """'global' (over the whole task vector), 'tensor' or None."""
        if self.density >= 1:
            return None
        if self.method == "ties":
            return "global" if self.paper else "tensor"
        if self.method == "dare_ties" and self.paper:
            return "global"
        return None

    @property
    def divide_by_weights(self) -> bool:
        if self.paper:
            return self.method == "average"
        return MERGEKIT_NORMALIZE[self.method] if self.normalize is None else bool(self.normalize)

    def describe(self) -> dict:
        out = {"method": self.method, "semantics": self.semantics, "lam": self.lam,
               "weights": dict(zip(self.names, self.weights))}
        if self.trim:
            out.update(density=self.density, trim_scope=self.trim)
        if self.dare:
            out.update(drop_p=self.drop_p, seed=self.seed, dare_rescale="1/(1-p)" if self.paper else "l1")
        if self.method == "sce":
            out.update(select_topk=self.select_topk)
            out.pop("weights")
        if self.method != "sce":
            out["normalize"] = self.divide_by_weights
        return out


# --- DARE --------------------------------------------------------------------------------

def _name_key(model: str, tensor: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(f"{model}\0{tensor}".encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))


def keep_mask(seed: int, model: str, tensor: str, start: int, stop: int, keep: float,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """Bernoulli(keep) for elements [start, stop) of a tensor, as float32 1.0 (keep) and 0.0
    (drop), into `out` if given (float32 for multiplying: a bool mask would be converted
    on every use); `start` must sit on a block."""
    if start % RNG_BLOCK:
        raise ValueError(f"chunk start {start} is not a multiple of {RNG_BLOCK}")
    key = _name_key(model, tensor)
    bound = np.uint32(min(round(keep * 2.0 ** 32), 2 ** 32 - 1))
    if out is None:
        out = torch.empty(stop - start)
    dest = out.numpy()
    for block in range(start // RNG_BLOCK, -(-stop // RNG_BLOCK)):
        lo = block * RNG_BLOCK
        hi = min(lo + RNG_BLOCK, stop)
        bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(*key, block)))
        np.less(bits.random_raw((hi - lo + 1) // 2).view(np.uint32)[:hi - lo], bound, out=dest[lo - start:hi - start],
                casting="unsafe")
    return out


def dare_(delta: torch.Tensor, recipe: Recipe, i: int, tensor: str, start: int, scale: float | None,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Drop in place (by `mask`, the model's keep_mask for this chunk, when it was drawn
    already); paper: divide by (1 − p); mergekit: multiply by the tensor's L1 scale
    (`scale`, None while that scale is being measured)."""
    if mask is None:
        mask = keep_mask(recipe.seed, recipe.names[i], tensor, start, start + delta.numel(), 1 - recipe.drop_p)
    delta.mul_(mask)
    if recipe.paper:
        delta.div_(1 - recipe.drop_p)
    elif scale is not None and scale != 1.0:
        delta.mul_(scale)
    return delta


def l1_scale(before: float, after: float, eps: float = 1e-7) -> float:
    """mergekit's L1 rescale: the kept entries carry the dropped ones' L1 mass."""
    return 1.0 if before < eps or after < eps else before / after


# --- combining ----------------------------------------------------------------------------

def combine(recipe: Recipe, base: torch.Tensor, tv: torch.Tensor, sce_weights: torch.Tensor | None = None,
            out: torch.Tensor | None = None, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """base + λ·(merged task vector), from the stacked (N, m) task vectors `tv` (trimmed
    and DAREd already; weighted here, in place), into `out` if given; `scratch`, a
    buffer of tv's shape, holds the sign agreement. `average` takes `tv` as the models."""
    w = torch.tensor(recipe.weights, dtype=tv.dtype)
    if recipe.method == "average":
        mean = _divide_by_total(recipe, w @ tv)
        return mean if out is None else out.copy_(mean)
    if recipe.method == "sce":  # Σ ω_i τ_i over the agreeing entries / Σ ω_i over them
        agree = _agreement(tv, scratch)
        omega = sce_weights.to(tv.dtype)
        div = omega @ agree
        if recipe.paper:
            div.masked_fill_(div == 0, 1)
        else:
            div.clamp_(min=1e-6)
        mixed = (omega @ tv.mul_(agree)).div_(div)
    else:
        if any(x != 1 for x in recipe.weights):
            tv.mul_(w[:, None])
        if not recipe.consensus:
            mixed = _divide_by_total(recipe, sum_rows(tv))
        else:
            agree = _agreement(tv, scratch)
            if recipe.paper:  # the disjoint mean: over the agreeing entries
                div = sum_rows(agree).clamp_(min=1)
            elif recipe.divide_by_weights:  # over the agreeing entries' weights
                div = w @ agree
                div.masked_fill_(div == 0, 1)
            mixed = sum_rows(tv.mul_(agree))
            if recipe.paper or recipe.divide_by_weights:
                mixed.div_(div)
    if recipe.lam != 1:
        mixed.mul_(recipe.lam)
    return torch.add(base, mixed, out=out)


def _divide_by_total(recipe: Recipe, x: torch.Tensor) -> torch.Tensor:
    if recipe.divide_by_weights:
        total = float(sum(recipe.weights))
        x.div_(total if abs(total) >= 1e-8 else 1.0)
    return x


def sum_rows(x: torch.Tensor) -> torch.Tensor:
    """x.sum(0) of an (N, m) tensor, bit for bit (torch adds the rows in order too), as
    N - 1 in-place adds: 3-4x faster than torch's reduction over the outer dim."""
    acc = x[0].clone()
    for row in x[1:]:
        acc.add_(row)
    return acc


def _agreement(tv: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(N, m) of 1.0 where an entry has the elected sign, that of the sum over models (a
    zero sum elects +), else 0.0, into `out` if given; zero entries never agree:
    τ·(±1) > 0, exactly."""
    elected = torch.ge(sum_rows(tv), 0, out=torch.empty(tv.shape[1:], dtype=tv.dtype)).mul_(2).sub_(1)
    return torch.mul(tv, elected, out=torch.empty_like(tv) if out is None else out).gt_(0)


def sce_weights(recipe: Recipe, mean_squares: list[float]) -> torch.Tensor:
    total = sum(mean_squares)
    tiny = total == 0 if recipe.paper else abs(total) < 1e-6
    if tiny:
        return torch.full((len(mean_squares),), 1.0 / len(mean_squares))
    return torch.tensor([v / total for v in mean_squares])
