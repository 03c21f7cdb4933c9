"""The rollout engine (real vLLM on this CPU) against the learner (a real DeepSpeed
engine): log-probs agree, a weight sync makes the engine's greedy output equal the
learner model's greedy output under transformers (tied output head included), seeded
groups are reproducible, and a GRPO step moves the policy the way the advantages say.

One engine and one learner serve the whole module (a vLLM engine starts in ~40 s)."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from deps import requires
from m2rl.jobs.grpo.config import GRPOConfig

pytestmark = [pytest.mark.vllm, pytest.mark.slow, requires("vllm")]

PROMPTS = ["What is 12 + 30?", "Name a prime number.", "Solve for $x$: $2x + 1 = 7$.", "Write a haiku.",
           "What is 7% of 300?", "Count to five."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcfg():
    g = OmegaConf.structured(GRPOConfig)
    g.max_new_tokens, g.group_size, g.reward_workers, g.temperature = 24, 4, 0, 1.0
    g.engine.micro_batch_size, g.optim.lr = 8, 1e-3
    return g


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from m2rl.models import ModelConfig, load_tokenizer, prepare_model

    path = prepare_model(ModelConfig(), cache_dir=tmp_path_factory.mktemp("models"))
    tok = load_tokenizer(path)
    from m2rl.train.batches import prompt_ids

    return path, tok, [prompt_ids(tok, [{"role": "user", "content": p}]) for p in PROMPTS]


@pytest.fixture(scope="module")
def engine(tiny, gcfg):
    from m2rl.rollout.engine import RolloutEngine

    os.environ["VLLM_CPU_KVCACHE_SPACE"] = "1"
    eng = RolloutEngine(str(tiny[0]), gcfg, seed=0, max_model_len=512, on_gpu=False)
    yield eng
    eng.close()  # not `del eng.llm`: that left the engine running (~3 GB) for the rest of the session


@pytest.fixture(scope="module")
def learner(tiny, gcfg):
    """A real one-process DeepSpeed learner (gloo)."""
    from m2rl.rl.learner import Learner
    from m2rl.train.distributed import destroy, init_distributed

    saved = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    init_distributed()
    yield Learner(str(tiny[0]), gcfg, total_steps=10, seqs_per_rank=8, pad_id=tiny[1].pad_token_id)
    destroy()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def hf_greedy(model, prompts: list[list[int]], n: int, eos: int) -> list[list[int]]:
    out = []
    model.eval()
    with torch.no_grad():
        for p in prompts:
            g = model.generate(torch.tensor([p]), max_new_tokens=n, do_sample=False, eos_token_id=eos,
                               pad_token_id=eos)[0, len(p):].tolist()
            out.append(g[: g.index(eos) + 1] if eos in g else g)
    return out


def engine_greedy(engine, prompts, n):
    from m2rl.rollout.engine import SamplingSpec

    groups = engine.generate(prompts, SamplingSpec(1, 0.0, 1.0, 0, n), [0] * len(prompts))
    return [g[0]["ids"].tolist() for g in groups]


def test_engine_logprobs_match_the_learner(engine, learner, tiny):
    from m2rl.rl.batching import pack
    from m2rl.rollout.engine import SamplingSpec

    _, tok, prompts = tiny
    groups = engine.generate(prompts, SamplingSpec(2, 1.0, 1.0, 0, 16), [7] * len(prompts))
    items = [{"prompt": np.array(p), "ids": c["ids"], "logprobs": c["logprobs"], "adv": 0.0}
             for p, g in zip(prompts, groups) for c in g]
    assert all(len(it["ids"]) == len(it["logprobs"]) > 0 for it in items)
    batch = pack(items, tok.pad_token_id, learner.device)
    with torch.no_grad():
        logp, _ = learner.logprobs(learner.engine, batch)
    m = batch["mask"].bool()
    diff = (logp[m] - batch["engine_logp"][m]).abs()
    assert diff.max().item() < 2e-3, diff.max()


def test_weight_sync_makes_engine_greedy_equal_learner_greedy(engine, learner, tiny):
    from m2rl.weightsync.sender import state_dict_bytes

    _, tok, prompts = tiny
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    module = learner.module
    original = {k: v.clone() for k, v in module.state_dict().items()}
    torch.manual_seed(1)
    with torch.no_grad():  # a big change, to the tied embedding/head too, so outputs really move
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    want = hf_greedy(module, prompts, 20, eos)
    assert engine_greedy(engine, prompts, 20) != want  # the engine still has the old weights
    engine.weights.load_bytes(state_dict_bytes(learner.engine))
    assert engine_greedy(engine, prompts, 20) == want
    # the output head alone: without lm_head.weight in the update, vLLM's head stays stale
    with torch.no_grad():
        module.get_input_embeddings().weight.mul_(-1.5)
    want = hf_greedy(module, prompts, 20, eos)
    engine.weights.load_bytes(state_dict_bytes(learner.engine))
    assert engine_greedy(engine, prompts, 20) == want
    module.load_state_dict(original)  # leave the learner as the other tests expect it


def test_seeded_groups_are_reproducible(engine, tiny):
    """Per-request seeds: the same prompts and seeds on the same weights draw the same
    groups whatever the engine ran before (what a resumed run relies on); other seeds
    draw others. The batch is big enough for chunked prefill, where per-request seeds
    crash vLLM on CPU unless the worker extension steps in."""
    from m2rl.rollout.engine import SamplingSpec

    prompts = tiny[2] * 6
    spec = SamplingSpec(8, 1.0, 1.0, 0, 12)
    ids = lambda gs: [[c["ids"].tolist() for c in g] for g in gs]  # noqa: E731
    seeds = list(range(100, 100 + len(prompts)))
    a = ids(engine.generate(prompts, spec, seeds))
    engine.generate(prompts[:5], spec, [1, 2, 3, 4, 5])  # whatever ran in between
    assert ids(engine.generate(prompts, spec, seeds)) == a
    assert len({tuple(x) for x in a[0]}) > 1  # the group's samples differ from each other
    assert ids(engine.generate(prompts, spec, [s + 1 for s in seeds])) != a


def test_worker_generates_and_rewards_per_domain(engine, gcfg, tiny):
    from m2rl.rollout.engine import SamplingSpec, spec_dict
    from m2rl.rollout.worker import RolloutWorker

    worker = RolloutWorker(engine, gcfg)
    try:
        reqs = [{"prompt_ids": tiny[2][0], "sample": {"domain": "math", "reward_spec": {"answer": "42"}}},
                {"prompt_ids": tiny[2][1], "sample": {"domain": "science",
                                                      "reward_spec": {"choices": ["a", "b"], "answer": "A"}}}]
        rep = worker.handle({"op": "generate", "requests": reqs, "spec": spec_dict(SamplingSpec(3, 1.0, 1.0, 0, 8)),
                             "seeds": [0, 1], "keep_text": True})
        assert rep["op"] == "generated" and [len(g) for g in rep["groups"]] == [3, 3]
        for c in (c for g in rep["groups"] for c in g):
            assert c["reward"] in (0.0, 1.0) and isinstance(c["text"], str) and c["ids"].dtype == np.int32
        assert rep["tokens"] == sum(len(c["ids"]) for g in rep["groups"] for c in g)
        assert rep["generate_s"] > 0 and rep["reward_s"] >= 0
    finally:
        worker.close()


def test_grpo_step_moves_logprobs_along_the_advantages(learner, engine, tiny):
    from m2rl.rl.batching import pack
    from m2rl.rollout.engine import SamplingSpec
    from m2rl.weightsync.sender import state_dict_bytes

    _, tok, prompts = tiny
    engine.weights.load_bytes(state_dict_bytes(learner.engine))
    groups = engine.generate(prompts[:2], SamplingSpec(4, 1.0, 1.0, 0, 12), [11, 12])
    items = [{"prompt": np.array(p), "ids": c["ids"], "logprobs": c["logprobs"], "adv": (1.0 if k < 2 else -1.0)}
             for p, g in zip(prompts, groups) for k, c in enumerate(g)]

    def seq_logp():
        batch = pack(items, tok.pad_token_id, learner.device)
        with torch.no_grad():
            lp, _ = learner.logprobs(learner.engine, batch)
        return (lp * batch["mask"]).sum(1)

    before = seq_logp()
    tokens = float(sum(len(it["ids"]) for it in items))
    stats = learner.train_step(items, [tokens], [len(items)], world=1)
    after = seq_logp()
    up = (after - before)[[i for i, it in enumerate(items) if it["adv"] > 0]]
    down = (after - before)[[i for i, it in enumerate(items) if it["adv"] < 0]]
    assert up.mean() > 0 > down.mean(), (up, down)
    assert stats["tokens"] == tokens and stats["clipped"] == 0  # one step per batch: ratio 1
    assert stats["is_max"] < 1.01 and stats["is_min"] > 0.99  # engine and learner agree on CPU fp32
