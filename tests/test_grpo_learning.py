"""GRPO learns: the tiny model, after SFT on the math generator, gets a clearly higher
math reward on held-out prompts after a few minutes of GRPO on this CPU.

Held-out reward = the mean reward of 32 samples (temperature 1) for each of 100 eval-split
prompts, scored by the math verifier, before the first step and after the last. The
SFT'd model's greedy answers beat its samples (its mode is better than its spread), and
GRPO's first gains come from sharpening the policy around what gets rewarded."""
from __future__ import annotations

import json

import pytest

from deps import requires
from conftest import launch

pytestmark = [pytest.mark.vllm, pytest.mark.slow, requires("vllm")]

SFT = ["stage=sft", "domain=math", "sft.steps=300", "sft.optim.lr=3e-3", "sft.engine.micro_batch_size=32",
       "sft.max_seq_len=256"]
STEPS = 20
GRPO = ["stage=grpo", "domain=math", "cluster.tasks_per_node=1", f"grpo.steps={STEPS}", "grpo.prompts_per_step=128",
        "grpo.group_size=8", "grpo.max_new_tokens=64", "grpo.optim.lr=2e-4", "grpo.engine.micro_batch_size=32",
        "grpo.eval_prompts=100", "grpo.eval_samples=32", "run.save_every=1000", "grpo.export=false"]


def test_grpo_raises_held_out_math_reward_over_the_sft_checkpoint(tmp_path):
    launch(f"paths.root={tmp_path}", *SFT, cwd=tmp_path, timeout=1800)
    sft = tmp_path / "default" / "sft" / "math" / "export"
    # -m: the local executor, whose job logs land in .submitit/
    launch(f"paths.root={tmp_path}", "-m", *GRPO, "grpo.init_from=sft/math", cwd=tmp_path, timeout=1800)
    done = json.loads((tmp_path / "default" / "grpo" / "math" / "DONE.json").read_text())
    assert (done["init_from"], done["start_model"]) == ("sft/math", str(sft))
    logs = "".join(p.read_text() for p in (tmp_path / "default" / ".submitit").glob("*/*_log.err"))
    assert f"GRPO starts from sft/math ({sft})" in logs
    start, end = done["eval"]["0"]["reward/mean"], done["eval"][str(STEPS)]["reward/mean"]
    print(f"\n[grpo learning] held-out math reward {start:.4f} -> {end:.4f} after {STEPS} steps "
          f"({done['seconds']['step_s']:.0f} s of steps)")
    # measured (3200 samples each; most prompts are always or never solved, so the two
    # estimates are far less noisy than 3200 independent draws): lr 4e-4 gave 0.0437 -> 0.0541
    # on an earlier machine but 0.0391 -> 0.0403 on an AVX-512 EPYC (the run is deterministic
    # per machine, not across CPUs); lr 2e-4 gives 0.0391 -> 0.0528 there (1.5e-3 collapses)
    assert end >= start + 0.007 and end >= 1.15 * start, (start, end)
