"""semantics=mergekit against mergekit itself, on the same small Qwen3 models.

mergekit (LGPL-3.0) is only a test oracle here: it lives in its own venv, called as a
subprocess. Create it (CI does) with:

    python3 -m venv .venv-mergekit && echo '*' > .venv-mergekit/.gitignore
    .venv-mergekit/bin/pip install -c constraints/cpu-dev.txt mergekit==0.1.5

The tests skip, saying so, only where that venv is absent or broken (M2RL_MERGEKIT_VENV moves
it), and never where M2RL_REQUIRE names mergekit (CI).
DARE draws its own random masks in each tool, so DARE is compared by definition (one
scale per tensor, L1 norm kept, keep rate) and exactly at drop_p = 0.
"""
from __future__ import annotations

import os
import subprocess

import pytest
import torch
import yaml
from safetensors.torch import load_file

from deps import mergekit_venv, requires
from m2rl.jobs.merge import merge
from m2rl.jobs.merge.synthetic import build_base, derive_task_model

VENV = mergekit_venv()
MERGEKIT = VENV / "bin" / "mergekit-multi"
pytestmark = [
    pytest.mark.slow,
    requires("mergekit"),
]
NAMES = ["math", "code", "science"]
WEIGHTS = [1.0, 0.5, 2.0]

# name -> (mergekit method, its shared parameters, per-model parameters, m2rl merge() kwargs)
CASES = {
    "average": ("linear", {}, {}, dict(method="average")),
    "ta": ("task_arithmetic", {"lambda": 0.7}, {}, dict(method="task_arithmetic", lam=0.7)),
    "ta_norm": ("task_arithmetic", {"normalize": True}, {}, dict(method="task_arithmetic", normalize=True)),
    "ties": ("ties", {"lambda": 0.8}, {"density": 0.3}, dict(method="ties", lam=0.8, density=0.3)),
    "ties_nonorm": ("ties", {"normalize": False}, {"density": 0.5}, dict(method="ties", density=0.5, normalize=False)),
    "sce": ("sce", {"select_topk": 0.6}, None, dict(method="sce", select_topk=0.6)),
    "sce_all": ("sce", {}, None, dict(method="sce")),
    "dare_ties_p0": ("dare_ties", {}, {"density": 1.0}, dict(method="dare_ties", drop_p=0.0)),
}


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("mk")
    base = build_base(root / "base", "qwen3", vocab_size=1024, hidden=64, seed=1)
    tasks = {n: derive_task_model(base, root / n, seed=i + 1, scale=0.05) for i, n in enumerate(NAMES)}
    return root, base, tasks


def _doc(name, method, shared, per_model, base, tasks, weights=WEIGHTS):
    models = []
    for (n, path), w in zip(tasks.items(), weights):
        params = {} if per_model is None else {"weight": w, **per_model}
        models.append({"model": str(path), **({"parameters": params} if params else {})})
    doc = {"name": name, "merge_method": method, "models": models, "dtype": "float32"}
    if method != "linear":
        doc["base_model"] = str(base)
    if shared:
        doc["parameters"] = shared
    return doc


@pytest.fixture(scope="session")
def oracle(models):
    """Every case merged by mergekit in one process (mergekit-multi)."""
    root, base, tasks = models
    # (mergekit-multi takes any string equal to a merge's name for that merge: hence "mk-")
    docs = [_doc(f"mk-{n}", m, s, p, base, tasks) for n, (m, s, p, _) in CASES.items()]
    one = {"math": tasks["math"]}
    docs.append(_doc("mk-dare_linear_1", "dare_linear", {}, {"density": 0.6}, base, one, [0.7]))
    cfg = root / "mergekit.yml"
    cfg.write_text(yaml.safe_dump_all(docs))
    out = root / "mergekit-out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([str(MERGEKIT), str(cfg), "-I", str(out), "--random-seed", "0", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _ours(models, name, **kw):
    root, base, tasks = models
    out = root / "m2rl" / name
    weights = None if kw.get("method") == "sce" else WEIGHTS
    merge(base, tasks, out, semantics="mergekit", weights=weights, **kw)
    return load_file(out / "model.safetensors")


@pytest.mark.parametrize("case", list(CASES))
def test_matches_mergekit(models, oracle, case):
    ours = _ours(models, case, **CASES[case][3])
    theirs = load_file(oracle / f"mk-{case}" / "model.safetensors")
    assert set(ours) == set(theirs)
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{case} {k}: {m}")


def test_ties_paper_semantics_is_not_mergekit(models, oracle):
    root, base, tasks = models
    merge(base, tasks, root / "paper", "ties", "paper", weights=WEIGHTS, lam=0.8, density=0.3)
    paper = load_file(root / "paper" / "model.safetensors")
    theirs = load_file(oracle / "mk-ties" / "model.safetensors")
    assert not all(torch.allclose(paper[k], theirs[k], rtol=1e-5, atol=1e-6) for k in paper)


def _dare_structure(out: dict, base: dict, task: dict, weight: float) -> float:
    """Check DARE-linear's definition on every tensor; return the overall keep rate."""
    kept_total = n_total = 0
    for k, o in out.items():
        d, got = task[k] - base[k], o - base[k]
        kept = got != 0
        if kept.any():
            scale = (got[kept] / (weight * d[kept])).median()  # one L1 scale per tensor
            torch.testing.assert_close(got[kept], scale * weight * d[kept], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.abs().sum(), weight * d.abs().sum(), rtol=1e-4, atol=1e-6)
        kept_total += int(kept.sum())
        n_total += o.numel()
    return kept_total / n_total


def test_dare_matches_mergekit_by_definition(models, oracle):
    root, base_dir, tasks = models
    out = root / "m2rl" / "dare_linear_1"
    merge(base_dir, {"math": tasks["math"]}, out, "dare_ta", "mergekit", weights=[0.7], drop_p=0.4, seed=0)
    base = load_file(base_dir / "model.safetensors")
    task = load_file(tasks["math"] / "model.safetensors")
    ours = _dare_structure(load_file(out / "model.safetensors"), base, task, 0.7)
    theirs = _dare_structure(load_file(oracle / "mk-dare_linear_1" / "model.safetensors"), base, task, 0.7)
    assert abs(ours - 0.6) < 0.01 and abs(theirs - 0.6) < 0.01
