"""GRPO's pure parts, checked by hand: advantages, the clipped loss with TIS and KL,
role planning, the prompt sampler, batch packing and the driver<->worker channel."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from m2rl.rl import loss as L
from m2rl.errors import RoleError
from m2rl.roles import Role, role_plan, separate_gpus


def test_group_advantages_grpo_and_drgrpo_by_hand():
    rewards = [1, 0, 0, 1, 1, 1, 1, 1]
    # group 1: mean 0.5, unbiased std sqrt(1/3); group 2: all equal -> no signal
    a = L.group_advantages(rewards, 4)
    s = 0.5 / math.sqrt(1 / 3)
    assert torch.allclose(a, torch.tensor([s, -s, -s, s, 0, 0, 0, 0]), atol=1e-5)
    d = L.group_advantages(rewards, 4, scale_by_std=False)
    assert torch.allclose(d, torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))
    with pytest.raises(ValueError):
        L.group_advantages([1, 0, 1], 2)


def _lp(ratios):
    return torch.log(torch.tensor([ratios], dtype=torch.float64)).requires_grad_(True)


def test_clipped_loss_asymmetric_clip_by_hand():
    # positive advantage: ratio 1.5 is clipped at 1.28 (no gradient), 0.5 and 1.1 are not
    logp = _lp([1.5, 0.5, 1.1])
    old = torch.zeros(1, 3, dtype=torch.float64)
    mask = torch.ones(1, 3)
    out = L.clipped_policy_loss(logp, old, torch.tensor([1.0]), mask, clip_low=0.2, clip_high=0.28, normalizer=3)
    assert out.loss.item() == pytest.approx(-(1.28 + 0.5 + 1.1) / 3)
    assert out.stats["clipped"] == 1 and out.stats["tokens"] == 3
    out.loss.backward()
    # d/dlogp of -r*A/3 is -r/3 where unclipped, 0 where clipped
    assert torch.allclose(logp.grad, torch.tensor([[0.0, -0.5 / 3, -1.1 / 3]], dtype=torch.float64))
    # negative advantage: the low side clips (0.5 -> 0.8), the high side does not
    logp = _lp([0.5, 1.5])
    out = L.clipped_policy_loss(logp, torch.zeros(1, 2, dtype=torch.float64), torch.tensor([-1.0]),
                                torch.ones(1, 2), clip_low=0.2, clip_high=0.28, normalizer=2)
    assert out.loss.item() == pytest.approx((0.8 + 1.5) / 2)
    assert out.stats["clipped"] == 1


def test_mask_normalizer_and_per_token_advantages():
    logp = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    adv = torch.tensor([[1.0, 2.0, 9.0], [9.0, -1.0, 3.0]], dtype=torch.float64)  # per token (e.g. OPD)
    out = L.clipped_policy_loss(logp, logp.detach(), adv, mask, clip_low=0.2, clip_high=0.28, normalizer=10)
    assert out.loss.item() == pytest.approx(-(1 + 2 - 1 + 3) / 10)  # masked tokens count for nothing
    assert out.stats["tokens"] == 4 and out.stats["clipped"] == 0 and out.stats["ratio_sum"] == 4


def test_truncated_importance_sampling_and_kl_by_hand():
    logp = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    old = logp.detach()
    engine = torch.log(torch.tensor([[1 / 3, 2.0]], dtype=torch.float64))  # weights p/q = 3 (cut to 2), 0.5
    out = L.clipped_policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 2), clip_low=0.2, clip_high=0.28,
                                normalizer=2, engine_logp=engine, tis_cap=2.0)
    assert out.loss.item() == pytest.approx(-(2.0 + 0.5) / 2)
    assert out.stats["is_truncated"] == 1 and out.stats["is_max"] == pytest.approx(3.0)
    assert out.stats["is_min"] == pytest.approx(0.5) and out.stats["is_sum"] == pytest.approx(3.5)
    # k3 with d = log(p_learner / p_engine): 3 - log 3 - 1 and 0.5 - log 0.5 - 1
    assert out.stats["kl_engine_sum"] == pytest.approx((2 - math.log(3)) + (math.log(2) - 0.5))
    # the low-variance KL to a reference policy twice as likely: 2 - log 2 - 1 per token
    ref = logp.detach() + math.log(2)
    out = L.clipped_policy_loss(logp, old, torch.tensor([0.0]), torch.ones(1, 2), clip_low=0.2, clip_high=0.28,
                                normalizer=2, ref_logp=ref, kl_coef=0.5)
    assert out.loss.item() == pytest.approx(0.5 * (1 - math.log(2)))
    assert out.stats["kl_ref_sum"] == pytest.approx(2 * (1 - math.log(2)))


def test_token_logprobs_and_entropy_match_softmax():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    ref = torch.log_softmax(logits / 0.7, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(L.token_logprobs(logits, targets, 0.7), ref, atol=1e-6)
    p = torch.softmax(logits, -1)
    assert torch.allclose(L.entropy(logits), -(p * p.log()).sum(-1), atol=1e-5)
    total = L.merge_stats({"a": 1.0, "x_max": 2.0, "x_min": 1.0}, {"a": 2.0, "x_max": 5.0, "x_min": 3.0, "b": 1.0})
    assert total == {"a": 3.0, "x_max": 5.0, "x_min": 1.0, "b": 1.0}


def test_roles_single_node_split_and_gpus():
    assert role_plan(1, 1, 0, 1, 1) == [Role("colocated", 0, 1, 0, ())]
    assert [r.kind for r in role_plan(2, 1, 0, 1, 1)] == ["learner", "rollout"]
    roles = role_plan(6, 1, 8, 2, 2)  # 4 learners on GPUs 0-3, two TP=2 engines on 4-5 and 6-7
    assert [(r.kind, r.index, r.gpus) for r in roles] == [
        ("learner", 0, (0,)), ("learner", 1, (1,)), ("learner", 2, (2,)), ("learner", 3, (3,)),
        ("rollout", 0, (4, 5)), ("rollout", 1, (6, 7))]
    assert roles[0].is_driver and not roles[1].is_driver and roles[4].has_engine
    shared = role_plan(2, 1, 1, 1, 1)  # one GPU: learner and engine share it
    assert [r.gpus for r in shared] == [(0,), (0,)]
    assert separate_gpus(6, 1, 8, 2, 2) and not separate_gpus(8, 1, 8, 2, 2) and not separate_gpus(2, 1, 1, 1, 1) and not separate_gpus(2, 1, 0, 1, 1)
    with pytest.raises(RoleError):
        role_plan(2, 1, 0, 2, 1)  # no learner left
    with pytest.raises(RoleError):
        role_plan(4, 1, 2, 1, 4)  # TP wider than a node


def test_roles_multi_node_split_by_node():
    roles = role_plan(16, 2, 8, 4, 2)  # node 0: 8 learners; node 1: 4 TP=2 engines, 4 idle tasks
    assert [r.kind for r in roles[:8]] == ["learner"] * 8 and roles[7].gpus == (7,)
    assert [(r.kind, r.index, r.gpus) for r in roles[8:12]] == [
        ("rollout", 0, (0, 1)), ("rollout", 1, (2, 3)), ("rollout", 2, (4, 5)), ("rollout", 3, (6, 7))]
    assert [r.kind for r in roles[12:]] == ["idle"] * 4
    assert roles[0].learners == 8 and roles[0].rollouts == 4 and separate_gpus(16, 2, 8, 4, 2)
    with pytest.raises(RoleError):
        role_plan(16, 2, 8, 16, 1)  # engines would need both nodes


def test_prompt_sampler_is_a_function_of_the_step():
    from m2rl.rl.sampler import PromptSampler

    a, b = PromptSampler(10, 4, seed=3), PromptSampler(10, 4, seed=3)
    seq = [a.indices(s) for s in range(5)]  # 20 positions: two full epochs
    assert b.indices(3) == seq[3] and b.indices(0) == seq[0]  # any order of calls
    flat = [i for s in seq for i in s]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]  # each epoch reshuffled
    assert PromptSampler(10, 4, seed=4).indices(0) != seq[0]
    assert a.state(3) == {"position": 12, "epoch": 1, "seed": 3, "n": 10}


def test_pack_aligns_targets_masks_and_engine_logprobs():
    from m2rl.rl.batching import pack, split

    items = [{"prompt": np.array([5, 6, 7]), "ids": np.array([8, 9]), "logprobs": np.array([-0.1, -0.2]), "adv": 1.0},
             {"prompt": np.array([5]), "ids": np.array([4, 3, 2]), "logprobs": np.array([-1., -2., -3.]), "adv": -1.0}]
    b = pack(items, pad_id=0, device="cpu")
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 4, 3, 2, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    # position t predicts token t+1: the response's tokens are targets at t = P-1 .. P+R-2
    assert b["mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]
    assert b["engine_logp"][0, 2:].tolist() == pytest.approx([-0.1, -0.2])
    assert b["engine_logp"][1, :3].tolist() == pytest.approx([-1, -2, -3])
    assert [len(p) for p in split(list(range(7)), 3)] == [2, 3, 2] and split([1], 2) == [[], [1]]


def test_mini_batch_sizes_add_up_over_learners():
    from m2rl.jobs.grpo.loop import _mini_sizes

    items = [{"ids": [0] * n} for n in (1, 2, 3, 4, 5, 6)]
    tokens, seqs = _mini_sizes(items, learners=2, mini_batches=1)
    assert tokens == [21] and seqs == [6]
    tokens, seqs = _mini_sizes(items, learners=2, mini_batches=2)
    # rank 0: [1, 3, 5] -> [1, 3] [5]; rank 1: [2, 4, 6] -> [2, 4] [6]
    assert tokens == [10, 11] and seqs == [4, 2]


def test_tied_head_is_sent_and_storage_unshared():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from m2rl.weightsync.sender import complete_state_dict, param_meta, tied_head
    from m2rl.weightsync.buckets import bucket_plan

    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                         tie_word_embeddings=True))
    assert tied_head(model) == ("lm_head.weight", "model.embed_tokens.weight")
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    full = complete_state_dict(model, sd)
    assert torch.equal(full["lm_head.weight"], full["model.embed_tokens.weight"])
    ptrs = [v.untyped_storage().data_ptr() for v in full.values()]
    assert len(set(ptrs)) == len(ptrs)
    meta = param_meta(model)
    assert meta[-1] == ("lm_head.weight", "float32", (64, 16)) and len(meta) == len(full)
    buckets = bucket_plan(meta, bucket_bytes=64 * 16 * 4)
    assert [m for b in buckets for m in b] == meta
    assert all(len({m[1] for m in b}) == 1 for b in buckets)
    assert all(sum(math.prod(m[2]) * 4 for m in b) <= 64 * 16 * 4 or len(b) == 1 for b in buckets)


def test_channel_replies_in_order_with_queued_requests():
    """Two requests queued on a worker (generate k+1, then load weights): replies are
    matched to their tags whatever order the driver asks for them in."""
    from m2rl.rollout.transport import DriverChannel, WorkerFailed, serve

    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen = []

    def handle(msg):
        seen.append(msg["op"])
        if msg["op"] == "boom":
            raise RuntimeError("kaboom")
        return {"op": "done", "echo": msg["x"]}

    out = {}
    t = threading.Thread(target=lambda: out.setdefault("stop", serve("127.0.0.1", port, 0, "k", handle, 30)))
    t.start()
    ch = DriverChannel("127.0.0.1", port, 1, "k", timeout_s=30)
    ch.send(0, {"op": "generate", "x": 1}, ("gen", 1))
    ch.send(0, {"op": "load", "x": 2}, ("load", 2))
    assert ch.reply(0, ("load", 2))["echo"] == 2  # the generate reply is kept for later
    assert ch.reply(0, ("gen", 1))["echo"] == 1
    ch.close({"op": "stop", "state": "completed", "step": 3})
    t.join(30)
    assert out["stop"]["step"] == 3 and seen == ["generate", "load"]

    raised: list[BaseException] = []  # the worker side's outcome, checked here in the test's thread

    def serve_and_record():
        try:
            serve("127.0.0.1", port, 0, "k", handle, 30)
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion below
            raised.append(e)

    t = threading.Thread(target=serve_and_record)
    t.start()
    ch = DriverChannel("127.0.0.1", port, 1, "k", timeout_s=30)
    ch.send(0, {"op": "boom", "x": 0}, "b")
    with pytest.raises(WorkerFailed, match="kaboom"):
        ch.reply(0, "b")
    ch.close()
    t.join(30)
    assert not t.is_alive() and len(raised) == 1 and isinstance(raised[0], RuntimeError), raised
    assert "kaboom" in str(raised[0])


def _receive_weights(port, plan, conn):
    from m2rl.weightsync.buckets import receive_buckets, weight_group

    _, pg = weight_group("127.0.0.1", port, 1, 2, backend="gloo")
    conn.send({k: v.clone() for k, v in receive_buckets(pg, plan, "cpu")})  # returns once read
    conn.recv()


def test_bucketed_weight_broadcast_streams_every_named_tensor():
    """The NCCL sync's logic (plan, flat buckets, cut back into named tensors, tied head),
    run over a gloo group with a receiving process."""
    import multiprocessing as mp
    import socket

    from transformers import Qwen3Config, Qwen3ForCausalLM

    from m2rl.weightsync.sender import BroadcastSender, param_meta
    from m2rl.weightsync.buckets import bucket_plan

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                         tie_word_embeddings=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = bucket_plan(param_meta(model), 64 * 16 * 4 + 1)  # several tensors a bucket, the embedding alone
    assert len(plan) > 2 and any(len(b) > 1 for b in plan)
    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_receive_weights, args=(port, plan, theirs))
    child.start()
    sender = BroadcastSender("127.0.0.1", port, 2, is_root=True, backend="gloo")
    assert sender.bucket_plan(model, bucket_mb=1) == bucket_plan(param_meta(model), 1 << 20)
    sender.send(model, plan)
    assert mine.poll(120)
    got = mine.recv()
    mine.send("bye")
    child.join(60)
    sd = model.state_dict()
    assert set(got) == set(sd) and "lm_head.weight" in got
    assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_a_broken_verifier_shows_up_in_error_frac_per_domain(caplog):
    """A math sample whose reward spec lacks its answer makes the real verifier raise: that
    0 is counted as a verifier failure (per domain), logged with its message, and kept
    apart from a wrong answer's 0."""
    from m2rl.rewards import Scorer
    from m2rl.rl.metrics import rollout_metrics, verifier_errors
    from m2rl.rl.signal import SignalWatch
    from m2rl.rollout.worker import attach_rewards

    good = {"id": "g", "domain": "math", "reward_spec": {"answer": "2"}}
    broken = {"id": "b", "domain": "math", "reward_spec": {"solution": "2"}}  # no "answer": a KeyError inside
    sci = {"id": "s", "domain": "science", "reward_spec": {"choices": ["a", "b"], "answer": "A"}}
    samples = [good, broken, sci]
    texts = [["\\boxed{2}", "\\boxed{3}"], ["\\boxed{2}", "\\boxed{2}"], ["A", "B"]]
    groups = [[{"ids": np.array([1, 2]), "text": t} for t in ts] for ts in texts]
    rewards = Scorer(workers=0).score([s for s, ts in zip(samples, texts) for _ in ts], [t for ts in texts for t in ts])
    attach_rewards(groups, rewards)
    m = rollout_metrics(samples, groups)
    assert m["reward/error_frac/math"] == 0.5 and m["reward/error_frac/science"] == 0.0
    assert m["reward/error_frac"] == pytest.approx(2 / 6)
    assert m["reward/mean/math"] == 0.25  # the wrong answer's 0 is not an error
    errs = verifier_errors(samples, groups)
    assert [(d, i) for d, i, _ in errs] == [("math", "b"), ("math", "b")] and "KeyError" in errs[0][2]
    watch = SignalWatch(warn_after=2)
    with caplog.at_level("WARNING", logger="m2rl.rl"):
        watch.observe(1, "math", 1.0, errs, 6)
        watch.observe(2, "math", 1.0, [], 6)
    assert "math verifier failed on sample b" in caplog.text and "KeyError" in caplog.text
    assert "2 steps in a row" in caplog.text and watch.summary()["warned"] == 1
    assert watch.summary()["verifier_error_frac"] == pytest.approx(2 / 12)
