"""`load_rl_dataset` / `load_sft_dataset`: one pipeline for generated and loaded data."""
from __future__ import annotations

import functools
import random

import datasets

from m2rl.data import blend, generators
from m2rl.data.config import DOMAINS, DataConfig
from m2rl.data.schema import Sample, to_dataset


def _prompt(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _generated(domain: str, split: str, n: int, seed: int, sft: bool) -> list[Sample]:
    out = []
    for i, task in enumerate(generators.generate(domain, split, n, seed, need_response=sft)):
        s: Sample = {"id": f"{domain}-{split}-{seed}-{i}", "domain": domain,
                     "messages": _prompt(task["prompt"]), "reward_spec": task["reward_spec"],
                     "source": "generated"}
        if sft:
            s["response"] = task["response"]
        out.append(s)
    return out


@functools.lru_cache(maxsize=4)
def _blend(source: str) -> dict[str, list[dict]]:
    return blend.load_blend(source)


def _loaded(domain: str, split: str, cfg: DataConfig) -> list[Sample]:
    rows = list(_blend(cfg.source).get(domain, []))
    if not rows:
        raise ValueError(f"{cfg.source} has no {domain} rows")
    random.Random(f"{cfg.seed}:{domain}").shuffle(rows)
    if split == "eval":
        return rows[:cfg.n_eval]
    rest = rows[cfg.n_eval:]
    return rest if cfg.n_train is None else rest[:cfg.n_train]


def _split_size(cfg: DataConfig, split: str) -> int | None:
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    return cfg.n_train if split == "train" else cfg.n_eval


def _counts(mix: dict[str, float], n: int) -> dict[str, int]:
    """Largest-remainder rounding of n * proportion."""
    total = sum(mix.values())
    if total <= 0 or any(v < 0 for v in mix.values()):
        raise ValueError(f"mix proportions must be >= 0 with a positive sum: {mix}")
    exact = {d: n * v / total for d, v in mix.items()}
    counts = {d: int(x) for d, x in exact.items()}
    for d in sorted(exact, key=lambda d: counts[d] - exact[d])[: n - sum(counts.values())]:
        counts[d] += 1
    return counts


def _samples(domain: str, cfg: DataConfig, split: str, sft: bool) -> list[Sample]:
    n = _split_size(cfg, split)
    if domain == "multi":
        return _multi(cfg, split, sft)
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: one of {DOMAINS + ('multi',)}")
    if sft:
        if cfg.sft_source == "generated":
            return _generated(domain, split, n or 1000, cfg.seed, sft=True)
        return _local_sft(domain, cfg, split)
    if cfg.source == "generated":
        return _generated(domain, split, n or 1000, cfg.seed, sft=False)
    return _loaded(domain, split, cfg)


def _multi(cfg: DataConfig, split: str, sft: bool) -> list[Sample]:
    n = _split_size(cfg, split)
    rng = random.Random(f"{cfg.seed}:multi:{split}")
    if cfg.mix is None:  # natural proportions: everything, shuffled, then cut
        rows = [s for d in cfg.domains for s in _samples(d, cfg, split, sft)]
        rng.shuffle(rows)
        return rows if n is None else rows[:n]
    unknown = set(cfg.mix) - set(DOMAINS)
    if unknown:
        raise ValueError(f"mix names unknown domains {sorted(unknown)}")
    if n is None:
        raise ValueError("a mix needs n_train/n_eval set")
    rows = []
    for d, k in _counts(cfg.mix, n).items():
        got = _samples(d, cfg, split, sft)
        if len(got) < k:
            raise ValueError(f"mix wants {k} {d} samples, the source has {len(got)}")
        rows += got[:k]
    rng.shuffle(rows)
    return rows


def _local_sft(domain: str, cfg: DataConfig, split: str) -> list[Sample]:
    rows = []
    for i, row in enumerate(blend.read_rows(cfg.sft_source)):
        msgs = list(row["messages"])
        response = row.get("response")
        if response is None and msgs and msgs[-1]["role"] == "assistant":
            response = msgs.pop()["content"]
        d = row.get("domain") or domain
        if d != domain or response is None:
            continue
        rows.append({"id": str(row.get("id", f"sft-{i}")), "domain": d, "messages": msgs,
                     "reward_spec": row.get("reward_spec") or {}, "source": cfg.sft_source,
                     "response": response})
    random.Random(f"{cfg.seed}:{domain}:sft").shuffle(rows)
    if split == "eval":
        return rows[:cfg.n_eval]
    return rows[cfg.n_eval:] if cfg.n_train is None else rows[cfg.n_eval:cfg.n_eval + cfg.n_train]


def load_rl_dataset(domain: str, cfg: DataConfig, split: str = "train") -> datasets.Dataset:
    """Prompts with their reward specs; `domain` may be "multi"."""
    return to_dataset(_samples(domain, cfg, split, sft=False))


def load_sft_dataset(domain: str, cfg: DataConfig, split: str = "train") -> datasets.Dataset:
    """Prompts with a reference `response` (generated ones pass their own verifier)."""
    return to_dataset(_samples(domain, cfg, split, sft=True), sft=True)
