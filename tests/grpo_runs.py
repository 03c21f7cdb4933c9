"""Reading a GRPO run dir in tests, and comparing a run with an uninterrupted reference run
of the same seeds (rewards, losses, per-step figures, final exported weights)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import launch

TRAJECTORY = ("reward/mean", "response/length", "totals/generated_tokens", "loss/policy", "entropy")


def train_lines(run: Path) -> list[dict]:
    if not (run / "metrics.jsonl").is_file():
        return []
    return [x for x in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if x["kind"] == "train"]


def exported_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "export" / "model.safetensors"))


def reference_run(tmp_path: Path, grpo: list[str], domain: str = "science") -> Path:
    """The same run, never interrupted, on the local executor; returns its run dir."""
    root = tmp_path / "reference"
    launch(f"paths.root={root}", "-m", *grpo, cwd=tmp_path, timeout=900)
    return root / "default" / "grpo" / domain


def assert_same_trajectory(run: Path, ref: Path, steps: int, keys=TRAJECTORY, moving: bool = True) -> None:
    got, want = train_lines(run), train_lines(ref)
    assert [x["step"] for x in got] == list(range(1, steps + 1)) == [x["step"] for x in want]
    if moving:
        assert sum(x["optim/grad_norm"] > 0 for x in want) >= 3  # rewards vary: the weights really move
    for key in keys:
        assert [x[key] for x in got] == pytest.approx([x[key] for x in want], rel=1e-5, abs=1e-7), key
    a, b = exported_weights(run), exported_weights(ref)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
