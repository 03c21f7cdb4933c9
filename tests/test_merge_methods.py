"""Each merge method against its definition, on tensors small enough to check by hand."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from m2rl.jobs.merge import merge
from m2rl.jobs.merge.synthetic import write_model


def _merge(tmp_path, method, semantics, base, deltas, **kw):
    """Models base + δ_i (dicts of tensors), merged; the output tensors."""
    names = [f"m{i}" for i in range(len(deltas))]
    b = write_model(tmp_path / "base", base)
    models = {n: write_model(tmp_path / n, {k: base[k] + d[k] for k in base}) for n, d in zip(names, deltas)}
    out = tmp_path / f"out-{method}-{semantics}"
    merge(b, models, out, method, semantics, **kw)
    return load_file(out / "model.safetensors")


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


D1 = {"w": t(1, -2, 3, 0.5)}
D2 = {"w": t(-1, 1.5, 1, -4)}
ZERO = {"w": t(0, 0, 0, 0)}


@pytest.mark.parametrize("semantics", ["paper", "mergekit"])
def test_average_is_the_weighted_mean_of_the_models(tmp_path, semantics):
    out = _merge(tmp_path, "average", semantics, {"w": t(0, 0, 0, 0)},
                 [{"w": t(1, 2, 3, 4)}, {"w": t(3, 2, 1, 0)}], weights=[1, 3])
    torch.testing.assert_close(out["w"], t(2.5, 2, 1.5, 1))


def test_average_without_normalize_is_the_weighted_sum(tmp_path):
    out = _merge(tmp_path, "average", "mergekit", {"w": t(0, 0, 0, 0)},
                 [{"w": t(1, 2, 3, 4)}, {"w": t(3, 2, 1, 0)}], weights=[1, 3], normalize=False)
    torch.testing.assert_close(out["w"], t(10, 8, 6, 4))


@pytest.mark.parametrize("semantics", ["paper", "mergekit"])
def test_task_arithmetic_adds_lambda_times_the_sum_of_task_vectors(tmp_path, semantics):
    out = _merge(tmp_path, "task_arithmetic", semantics, {"w": t(1, 1, 1, 1)},
                 [{"w": t(1, -2, 3, 0.5)}, {"w": t(-1, 1, 1, -4)}], lam=0.5)
    torch.testing.assert_close(out["w"], t(1, 0.5, 3, -0.75))


def test_task_arithmetic_normalize_divides_by_the_weight_sum(tmp_path):
    out = _merge(tmp_path, "task_arithmetic", "mergekit", {"w": t(1, 1, 1, 1)},
                 [{"w": t(1, -2, 3, 0.5)}, {"w": t(-1, 1, 1, -4)}], weights=[2, 1], lam=0.5, normalize=True)
    torch.testing.assert_close(out["w"], 1 + 0.5 * t(1, -3, 7, -3) / 3)


def test_ties_paper_trims_globally_keeps_ties_and_takes_the_disjoint_mean(tmp_path):
    # one tensor = the whole model: D = 4, k = int(4 * 0.5) + 1 = 3 largest magnitudes, ties kept
    # τ1 = [1, -2, 3, 0]; τ2 = δ2 (its 3rd largest |.| is 1, shared by two entries)
    # w = [1, .5]: Σwτ = [.5, -1.25, 3.5, -2] elects [+, -, +, -]
    out = _merge(tmp_path, "ties", "paper", ZERO, [D1, D2], weights=[1, 0.5], density=0.5)
    torch.testing.assert_close(out["w"], t(1, -2, (3 + 0.5) / 2, -2))


def test_ties_mergekit_trims_per_tensor_to_exactly_k_and_divides_by_agreeing_weights(tmp_path):
    # k = max(1, int(4 * 0.5)) = 2: τ1 = [0, -2, 3, 0], τ2 = [0, 1.5, 0, -4]
    # w = [1, .5]: Σwτ = [0, -1.25, 3, -2]; position 3: -2 / 0.5
    out = _merge(tmp_path, "ties", "mergekit", ZERO, [D1, D2], weights=[1, 0.5], density=0.5)
    torch.testing.assert_close(out["w"], t(0, -2, 3, -4))


def test_ties_lambda_scales_the_merged_task_vector(tmp_path):
    out = _merge(tmp_path, "ties", "mergekit", {"w": t(1, 1, 1, 1)}, [D1, D2], weights=[1, 0.5], density=0.5, lam=2)
    torch.testing.assert_close(out["w"], 1 + 2 * t(0, -2, 3, -4))


def test_the_two_ties_scopes_differ_where_they_should(tmp_path):
    # one model; tensor a moved a lot, tensor b a little. density 0.5 of 8 values:
    # paper: k = 5 over the whole model -> all of a, only b's largest;
    # mergekit: 2 per tensor -> a's two largest and b's two largest.
    base = {"a": t(0, 0, 0, 0), "b": t(0, 0, 0, 0)}
    delta = {"a": t(10, -20, 30, -40), "b": t(0.1, -0.4, 0.3, -0.2)}
    paper = _merge(tmp_path / "p", "ties", "paper", base, [delta], density=0.5)
    mk = _merge(tmp_path / "m", "ties", "mergekit", base, [delta], density=0.5)
    torch.testing.assert_close(paper["a"], delta["a"])
    torch.testing.assert_close(paper["b"], t(0, -0.4, 0, 0))
    torch.testing.assert_close(mk["a"], t(0, 0, 30, -40))
    torch.testing.assert_close(mk["b"], t(0, -0.4, 0.3, 0))


def test_ties_density_one_keeps_everything(tmp_path):
    for sem in ("paper", "mergekit"):
        out = _merge(tmp_path / sem, "ties", sem, ZERO, [D1, D1], density=1.0)
        torch.testing.assert_close(out["w"], D1["w"])


def _big(value: float = 1.0, n: int = 1 << 18, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"w": (torch.randn(n, generator=g) if value is None else torch.full((n,), value))}


def test_dare_paper_drops_with_probability_p_and_rescales_by_exactly_1_over_1_minus_p(tmp_path):
    delta = _big(None)
    out = _merge(tmp_path, "dare_ta", "paper", {"w": torch.zeros(1 << 18)}, [delta], drop_p=0.3, seed=7)["w"]
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(out[kept], delta["w"][kept] / (1 - 0.3))


@pytest.mark.parametrize("semantics", ["paper", "mergekit"])
def test_dare_preserves_the_expectation(tmp_path, semantics):
    # δ repeats 4 values 2^16 times: each value's mean over its copies estimates E[DARE(δ)]
    p, reps = 0.3, 1 << 16
    pattern = t(1, -2, 3, 0.5)
    out = _merge(tmp_path, "dare_ta", semantics, {"w": torch.zeros(4 * reps)}, [{"w": pattern.repeat(reps)}],
                 drop_p=p, seed=3)["w"]
    means = out.reshape(reps, 4).mean(0)
    sd = pattern.abs() * (p / (1 - p)) ** 0.5 / reps ** 0.5
    assert ((means - pattern).abs() < 6 * sd).all(), (means, pattern)


def test_dare_mergekit_rescales_to_the_l1_norm_of_each_task_vector(tmp_path):
    delta = _big(None)
    out = _merge(tmp_path, "dare_ta", "mergekit", {"w": torch.zeros(1 << 18)}, [delta], drop_p=0.5, seed=1)["w"]
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.005
    ratio = out[kept] / delta["w"][kept]
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0].item()))  # one scale per tensor
    torch.testing.assert_close(out.abs().sum(), delta["w"].abs().sum(), rtol=1e-5, atol=0)


def test_dare_is_seeded_and_independent_of_tensor_order_and_chunking(tmp_path):
    zero = torch.zeros(3 << 16)
    delta = _big(None, n=3 << 16)["w"]
    one = _merge(tmp_path / "a", "dare_ta", "paper", {"x": zero}, [{"x": delta}], seed=5)["x"]
    again = _merge(tmp_path / "b", "dare_ta", "paper", {"x": zero}, [{"x": delta}], seed=5, chunk_mb=0.25)["x"]
    other = _merge(tmp_path / "c", "dare_ta", "paper", {"x": zero}, [{"x": delta}], seed=6)["x"]
    # more tensors before and after x (visited first and last), and x in another model slot
    more = _merge(tmp_path / "d", "dare_ta", "paper", {"a": zero, "x": zero, "z": zero},
                  [{"a": delta, "x": delta, "z": delta}], seed=5)
    assert torch.equal(one, again)
    assert torch.equal(one, more["x"])
    assert not torch.equal(more["a"], more["x"])  # each tensor has its own mask
    assert not torch.equal(one, other)


def test_dare_ties_paper_is_dare_then_ties(tmp_path):
    # drop_p tiny: DARE keeps everything here and rescales by 1/(1-p); then TIES as above
    p = 1e-9
    out = _merge(tmp_path, "dare_ties", "paper", ZERO, [D1, D2], weights=[1, 0.5], density=0.5, drop_p=p)
    torch.testing.assert_close(out["w"], t(1, -2, (3 + 0.5) / 2, -2) / (1 - p))


def test_dare_ties_mergekit_elects_signs_without_trim_or_normalize(tmp_path):
    out = _merge(tmp_path, "dare_ties", "mergekit", ZERO, [D1, D2], weights=[1, 0.5], density=0.5, drop_p=1e-9)
    # no magnitude trim: Σwδ = [.5, -1.25, 3.5, -1.5] -> [+, -, +, -]; sums of agreeing wδ
    torch.testing.assert_close(out["w"], t(1, -2, 3.5, -2))


S1 = {"w": t(1, -1, 2, 0)}
S2 = {"w": t(3, 1, -2, 0)}


@pytest.mark.parametrize("semantics", ["paper", "mergekit"])
def test_sce_weights_by_mean_square_erases_by_sign_and_normalises(tmp_path, semantics):
    # mean squares 1.5 and 3.5 -> ω = [.3, .7]; Σδ = [4, 0, 0, 0] elects + everywhere
    out = _merge(tmp_path, "sce", semantics, ZERO, [S1, S2])
    torch.testing.assert_close(out["w"], t((0.3 * 1 + 0.7 * 3) / 1.0, 1, 2, 0))


@pytest.mark.parametrize("semantics", ["paper", "mergekit"])
def test_sce_select_topk_keeps_the_highest_variance_entries(tmp_path, semantics):
    # variances [1, 1, 4, 0]: 3 nonzero, k = int(3 * .5) = 1 -> only entry 2 survives
    out = _merge(tmp_path, "sce", semantics, ZERO, [S1, S2], select_topk=0.5)
    torch.testing.assert_close(out["w"], t(0, 0, 2, 0))


def test_sce_semantics_differ_on_tiny_task_vectors(tmp_path):
    # Σ mean(δ²) = 5e-8 < 1e-6: mergekit falls back to uniform weights, the paper does not
    small = [{"w": S1["w"] * 1e-4}, {"w": S2["w"] * 1e-4}]
    paper = _merge(tmp_path / "p", "sce", "paper", ZERO, small)["w"]
    mk = _merge(tmp_path / "m", "sce", "mergekit", ZERO, small)["w"]
    torch.testing.assert_close(paper[0], torch.tensor(2.4e-4))
    torch.testing.assert_close(mk[0], torch.tensor(2.0e-4))


def test_integer_tensors_are_copied_from_the_base(tmp_path):
    base = {"w": t(0, 0), "ids": torch.arange(5)}
    b = write_model(tmp_path / "base", base)
    m = write_model(tmp_path / "m", {"w": t(1, 1), "ids": torch.arange(5) + 1})
    merge(b, {"m": m}, tmp_path / "out", "task_arithmetic")
    out = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(out["ids"], torch.arange(5)) and torch.equal(out["w"], t(1, 1))


def test_bf16_inputs_are_merged_in_float32_and_written_in_the_base_dtype(tmp_path):
    base = {"w": torch.zeros(4, dtype=torch.bfloat16)}
    deltas = [{"w": t(1, 2, 3, 4).bfloat16()}, {"w": t(1, 2, 3, 4).bfloat16()}]
    out = _merge(tmp_path, "task_arithmetic", "paper", base, deltas, lam=0.5)
    assert out["w"].dtype == torch.bfloat16
    torch.testing.assert_close(out["w"].float(), t(1, 2, 3, 4))
    out32 = _merge(tmp_path / "f", "task_arithmetic", "paper", base, deltas, lam=0.5, dtype="float32")
    assert out32["w"].dtype == torch.float32
