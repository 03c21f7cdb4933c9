"""Exact top-k selection in bounded memory, and TIES' whole-model top-k (semantics=paper)
computed by streaming against the in-memory reference."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from m2rl.jobs.merge import merge
from m2rl.jobs.merge.select import KthLargest, TopKMask
from m2rl.jobs.merge.synthetic import write_model


def _stream(x: torch.Tensor, k: int, pieces: int):
    chunks = list(x.chunk(pieces)) if pieces > 1 else [x]
    sel = KthLargest(k)
    for c in chunks:
        sel.add_hi(c)
    sel.split()
    if sel.needs_lo:
        for c in chunks:
            sel.add_lo(c)
    return sel.result(), chunks


def _data(kind: str, n: int = 50_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g).abs()
    if kind == "ties":  # few distinct values: most of them tied
        x = (x * 4).round() / 4
    elif kind == "zeros":  # mostly zeros, as a sparse task vector
        x = x * (torch.rand(n, generator=g) < 0.05)
    elif kind == "wide":  # magnitudes spanning many binades
        x = x * torch.exp2(torch.randint(-40, 20, (n,), generator=g).float())
    return x


@pytest.mark.parametrize("kind", ["plain", "ties", "zeros", "wide"])
@pytest.mark.parametrize("pieces", [1, 7])
@pytest.mark.parametrize("k", [1, 37, 10_000, 49_999, 50_000])
def test_kth_largest_is_exact(kind, pieces, k):
    x = _data(kind)
    th, chunks = _stream(x, k, pieces)
    want = x.kthvalue(x.numel() - k + 1).values
    assert th.value == want.item()
    assert th.n_greater == int((x > want).sum()) and th.n_equal == int((x == want).sum())
    keep = TopKMask(th)
    mask = torch.cat([keep(c) for c in chunks])
    assert int(mask.sum()) == k  # exactly k, ties admitted in stream order
    assert bool((x[mask] >= want).all()) and bool((x[~mask] <= want).all())


def test_kth_largest_refuses_more_than_it_saw():
    sel = KthLargest(5)
    sel.add_hi(torch.ones(4))
    with pytest.raises(ValueError):
        sel.split()


def _paper_ties_reference(base: dict, tasks: list[dict], weights: list[float], density: float, lam: float):
    """The TIES reference implementation's rule on whole flattened task vectors, in memory."""
    names = sorted(base)
    flat = torch.cat([base[k].flatten() for k in names])
    taus = []
    for sd in tasks:
        d = torch.cat([sd[k].flatten() for k in names]) - flat
        kth = d.abs().kthvalue(d.numel() - int(d.numel() * density)).values
        taus.append(d * (d.abs() >= kth))
    tv = torch.stack(taus) * torch.tensor(weights)[:, None]
    elected = torch.where(tv.sum(0) >= 0, 1.0, -1.0)
    agree = (torch.sign(tv) == elected).float()
    merged = flat + lam * (tv * agree).sum(0) / agree.sum(0).clamp(min=1)
    out, pos = {}, 0
    for k in names:
        out[k] = merged[pos:pos + base[k].numel()].reshape(base[k].shape)
        pos += base[k].numel()
    return out, [taus[i].abs()[taus[i] != 0].min().item() for i in range(len(tasks))]


@pytest.mark.parametrize("quantized", [False, True])
def test_streaming_global_top_k_equals_the_in_memory_reference(tmp_path, quantized):
    # 3 tensors (one spans 3 chunks of 65536), inputs in 2 shards, output in several
    g = torch.Generator().manual_seed(1)
    shapes = {"emb": (3000, 64), "mlp": (64, 100), "norm": (64,)}
    base = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    tasks = []
    for i in range(3):
        d = {k: torch.randn(s, generator=g) * (0.01 if k == "emb" else 0.05) for k, s in shapes.items()}
        if quantized:  # many exact ties at the threshold
            d = {k: (v * 400).round() / 400 for k, v in d.items()}
        tasks.append({k: base[k] + d[k] for k in shapes})
    b = write_model(tmp_path / "base", base, shards=2)
    models = {f"t{i}": write_model(tmp_path / f"t{i}", sd, shards=2) for i, sd in enumerate(tasks)}
    weights = [1.0, 0.5, 2.0]
    record = merge(b, models, tmp_path / "out", "ties", "paper", weights=weights, density=0.1, lam=0.9,
                   chunk_mb=0.25, shard_mb=0.4)
    assert record["shards"] > 1
    out = {}
    for f in (tmp_path / "out").glob("*.safetensors"):
        out.update(load_file(f))
    want, smallest_kept = _paper_ties_reference(base, tasks, weights, 0.1, 0.9)
    for k in shapes:
        torch.testing.assert_close(out[k], want[k], rtol=1e-6, atol=1e-6)
    got = [record["ties_thresholds"][f"t{i}"]["value"] for i in range(3)]
    assert got == smallest_kept  # the very threshold the reference's kthvalue finds
