"""The learner at long-response scale, on the tiny model: chunked log-probs equal the full
`[B, T, V]` path (values and gradients), token-budget micro-batches cover every row
exactly once, a token-budget step equals a row-count step, and ZeRO-3 loads the model
partitioned (a real one-process DeepSpeed engine on gloo)."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from m2rl.rl import loss as L
from m2rl.rl.batching import micro_batches, pack, pad_row, row_tokens
from m2rl.rl.logprobs import response_logprobs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from m2rl.models import ModelConfig, prepare_model

    return prepare_model(ModelConfig(), cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def dist():
    from m2rl.train.distributed import destroy, init_distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    init_distributed()
    yield
    destroy()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _items(n: int, seed: int, vocab: int) -> list[dict]:
    """Rows of varied prompt/response lengths (short, long, one-token responses)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p, r = int(rng.integers(2, 9)), int(rng.choice([1, 3, 7, 15, 30]))
        out.append({"id": i, "prompt": rng.integers(0, vocab, p), "ids": rng.integers(0, vocab, r),
                    "logprobs": -rng.random(r).astype(np.float32), "adv": float(rng.normal())})
    return out


def test_chunked_logprobs_and_loss_equal_the_full_logits_path(tiny):
    from m2rl.models import load_model

    model = load_model(tiny, "float32")
    model.config.use_cache = False
    items = _items(5, seed=1, vocab=model.config.vocab_size)
    batch = pack(items, pad_id=0, device="cpu")  # right padding; rows of 1..30 response tokens
    params = [p for p in model.parameters()]

    def loss_and_grads(logp):
        out = L.clipped_policy_loss(logp, logp.detach(), batch["adv"], batch["mask"], clip_low=0.2, clip_high=0.28,
                                    normalizer=float(batch["mask"].sum()), engine_logp=batch["engine_logp"],
                                    tis_cap=2.0)
        return out.loss, torch.autograd.grad(out.loss, params, allow_unused=True)

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    full = L.token_logprobs(logits, batch["input_ids"][:, 1:], 0.7) * batch["mask"]
    full_ent = L.entropy(logits.detach(), 0.7)
    loss_a, grads_a = loss_and_grads(full)
    lp, ent = response_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["mask"], 0.7,
                                with_entropy=True, chunk_tokens=4)  # many chunks, one split mid-row
    loss_b, grads_b = loss_and_grads(lp)
    on = batch["mask"] > 0
    assert torch.allclose(lp[on], full[on], atol=1e-5) and (lp[~on] == 0).all()
    assert torch.allclose(ent[on], full_ent[on], atol=1e-5)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-5, abs=1e-7)
    assert loss_a.abs().item() > 1e-4  # the comparison is not between two zeros
    for (name, _), ga, gb in zip(model.named_parameters(), grads_a, grads_b):
        if ga is None:
            assert gb is None or not gb.any(), name
            continue
        assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-6), (name, (ga - gb).abs().max())


def test_token_budget_micro_batches_cover_every_row_once():
    items = _items(40, seed=2, vocab=100)
    for budget in (40, 64, 200):
        micros = micro_batches(items, micro_batch_size=8, max_tokens=budget)
        ids = sorted(it["id"] for mb in micros for it in mb)
        assert ids == list(range(40)), budget
        for mb in micros:
            longest = max(row_tokens(it) for it in mb)
            assert len(mb) == 1 or len(mb) * longest <= budget, (budget, [row_tokens(it) for it in mb])
        # fewer padded tokens than row-count batches of the same rows
        padded = sum(len(mb) * max(row_tokens(it) for it in mb) for mb in micros)
        by_rows = sum(len(mb) * max(row_tokens(it) for it in mb) for mb in micro_batches(items, 8))
        assert padded <= by_rows, budget
    rows = micro_batches(items, micro_batch_size=8)
    assert [len(mb) for mb in rows] == [8] * 5 and [it["id"] for mb in rows for it in mb] == list(range(40))


def _learner(tiny, **over):
    from m2rl.jobs.grpo.config import GRPOConfig
    from m2rl.rl.learner import Learner

    g = OmegaConf.structured(GRPOConfig)
    g.max_new_tokens, g.temperature, g.optim.lr = 32, 1.0, 1e-3
    g.engine.zero_stage, g.engine.micro_batch_size = 2, 8
    for k, v in over.items():
        OmegaConf.update(g, k, v)
    torch.manual_seed(0)
    return Learner(str(tiny), g, total_steps=4, seqs_per_rank=12, pad_id=0)


def _step_and_probe(learner, items, probe):
    tokens = float(sum(len(it["ids"]) for it in items))
    stats = learner.train_step(items, [tokens], [len(items)], world=1)
    with torch.no_grad():
        batch = pack(probe, 0, learner.device)
        lp, _ = learner.logprobs(learner.engine, batch)
    return stats, lp


def test_token_budget_step_equals_row_count_step_and_zero3_loads_partitioned(tiny, dist):
    from m2rl.models import load_model
    from m2rl.train.config import EngineConfig, OptimConfig
    from m2rl.train.engine import partitioned_init

    with partitioned_init(EngineConfig(zero_stage=3), OptimConfig()):
        part = load_model(tiny, "float32")
    assert all(hasattr(p, "ds_id") and p.numel() == 0 for p in part.parameters())  # no full copy on this rank
    assert sum(p.ds_numel for p in part.parameters()) > 0
    with partitioned_init(EngineConfig(zero_stage=2), OptimConfig()):
        whole = load_model(tiny, "float32")
    assert not any(hasattr(p, "ds_id") for p in whole.parameters())
    del part, whole

    items, probe = _items(12, seed=3, vocab=2048), _items(4, seed=4, vocab=2048)
    rows = _learner(tiny)  # 12 rows: micro-batches of 8 + 4
    s_rows, lp_rows = _step_and_probe(rows, items, probe)
    budget = _learner(tiny, **{"engine.max_tokens_per_micro_batch": 48})  # many small micro-batches
    assert len(budget.plan(items)[0]) > 2
    s_budget, lp_budget = _step_and_probe(budget, items, probe)
    z3 = _learner(tiny, **{"engine.max_tokens_per_micro_batch": 48, "engine.zero_stage": 3})
    s_z3, lp_z3 = _step_and_probe(z3, items, probe)
    assert s_rows["tokens"] == s_budget["tokens"] == s_z3["tokens"] == sum(len(it["ids"]) for it in items)
    for s in (s_budget, s_z3):
        assert s["loss_sum"] == pytest.approx(s_rows["loss_sum"], rel=1e-4, abs=1e-6)
        assert s["grad_norm"] == pytest.approx(s_rows["grad_norm"], rel=1e-4)
    pb = pack(probe, 0, "cpu")
    on = pb["mask"] > 0
    with torch.no_grad():
        before, _ = response_logprobs(load_model(tiny, "float32"), pb["input_ids"], pb["attention_mask"], pb["mask"])
    assert (lp_rows[on] - before[on]).abs().max() > 1e-3  # the step moved the policy: the probe can tell
    for lp in (lp_budget, lp_z3):
        assert torch.allclose(lp[on], lp_rows[on], atol=2e-5), (lp[on] - lp_rows[on]).abs().max()
    # a learner whose shard is only pad rows (the busiest-learner padding) still runs a real
    # backward, with zero gradient, so every rank's gradient collectives line up
    for learner in (rows, z3):
        s_pad = learner.train_step([pad_row(0)], [1.0], [1], world=1)
        assert s_pad["tokens"] == 0 and s_pad["grad_norm"] == 0.0
