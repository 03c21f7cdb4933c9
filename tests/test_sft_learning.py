"""SFT learns: on the bundled math generator the tiny model's held-out loss drops by a
clear margin, and the exported model answers some held-out problems correctly, as the
math verifier judges its greedy answers."""
from __future__ import annotations

import json

import pytest

from conftest import launch

pytestmark = pytest.mark.slow
N_EVAL = 100


def test_sft_on_math_lowers_held_out_loss_and_solves_some_problems(tmp_path):
    import torch

    from m2rl.data import DataConfig, load_sft_dataset, to_sample
    from m2rl.models import load_model, load_tokenizer
    from m2rl.rewards import Scorer

    launch(f"paths.root={tmp_path}", "stage=sft", "domain=math", "sft.steps=150", "sft.packing=true",
           "sft.max_seq_len=256", "sft.engine.micro_batch_size=8", "sft.optim.lr=5e-3", "sft.log_every=25",
           "run.save_every=1000", f"data.n_eval={N_EVAL}", cwd=tmp_path, timeout=900)
    run = tmp_path / "default" / "sft" / "math"
    done = json.loads((run / "DONE.json").read_text())
    print(f"\n[sft learning] held-out loss {done['eval_loss_start']:.3f} -> {done['eval_loss']:.3f}")
    assert done["eval_loss"] < 0.3 * done["eval_loss_start"]

    tok, model = load_tokenizer(run / "export"), load_model(run / "export").eval()
    held_out = [to_sample(r) for r in load_sft_dataset("math", DataConfig(n_eval=N_EVAL), "eval")]
    prompts = [tok.apply_chat_template(s["messages"], add_generation_prompt=True, tokenize=False) for s in held_out]
    answers = []
    for i in range(0, len(prompts), 50):
        enc = tok(prompts[i:i + 50], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=96, do_sample=False)
        answers += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    with Scorer(workers=0) as scorer:
        rewards = [r.reward for r in scorer.score(held_out, answers)]
    solved = sum(r > 0 for r in rewards)
    print(f"[sft learning] solved {solved}/{len(held_out)} held-out math problems (math verifier)")
    assert solved >= 2
    assert sum("\\boxed{" in a for a in answers) > 0.9 * len(answers)  # it learned the answer format
