"""m2rl.train, piece by piece, in one process: schedule, sampler, chat tokenization,
packing, DeepSpeed engines (resume, export from ZeRO-3, grad norms) and the logger."""
from __future__ import annotations

import math
import os

import pytest
import torch

from m2rl.train.batches import IGNORE, StepSampler, collate, pack, tokenize_chat
from m2rl.train.config import EngineConfig, OptimConfig
from m2rl.train.schedule import lr_factor


# --- pure pieces -----------------------------------------------------------------------

def test_package_api_resolves_lazily():
    import m2rl.train as train

    assert all(callable(getattr(train, name)) for name in train.__all__)
    with pytest.raises(AttributeError):
        train.no_such_thing  # noqa: B018


def test_warmup_then_cosine_to_the_floor():
    f = [lr_factor(s, 100, 10, "cosine", 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # linear warmup over 10 steps
    assert all(a > b for a, b in zip(f[9:], f[10:]))  # then only down
    assert f[-1] == pytest.approx(0.1) and f[54] == pytest.approx(0.55)  # the floor at the end; half way: half way
    assert lr_factor(150, 100, 10, "cosine", 0.1) == pytest.approx(0.1)  # past the end: the floor
    assert lr_factor(49, 100, 0, "constant") == 1.0 and lr_factor(49, 100, 0, "linear") == pytest.approx(0.5)


def test_sampler_shards_a_seeded_stream_and_resumes_where_it_left():
    n, micro, accum, world = 37, 3, 2, 2
    ranks = [StepSampler(n, 7, micro, accum, world, r) for r in range(world)]
    one = StepSampler(n, 7, micro * world, accum, 1, 0)  # the same global batch in one process
    seen = []
    for _ in range(10):
        steps = [s.next_step() for s in ranks]
        rows = sorted(i for s in steps for mb in s for i in mb)
        assert rows == sorted(i for mb in one.next_step() for i in mb)  # same rows, whatever the world size
        assert all(len(mb) == micro for s in steps for mb in s) and len(steps[0]) == accum
        seen += rows
    epoch0 = [ranks[0]._row(i) for i in range(n)]
    assert sorted(epoch0) == list(range(n))  # an epoch visits every row once
    assert [ranks[0]._row(i) for i in range(n, 2 * n)] != epoch0  # and the next one in another order
    resumed = StepSampler(n, 7, micro, accum, world, 1)
    resumed.load_state_dict(ranks[1].state_dict())
    assert resumed.next_step() == ranks[1].next_step() and resumed.epoch == ranks[1].epoch
    with pytest.raises(ValueError, match="data changed"):
        StepSampler(n + 1, 7, micro, accum, world, 0).load_state_dict(ranks[0].state_dict())


# --- with the tiny model's tokenizer ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dir():
    from m2rl.models import ModelConfig, prepare_model

    return prepare_model(ModelConfig())


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    from m2rl.models import load_tokenizer

    return load_tokenizer(tiny_dir, padding_side="right")


MESSAGES = [{"role": "user", "content": "What is $3 + 4$?"}]
RESPONSE = "<think>\n3 + 4 = 7.\n</think>\n\nThe answer is $\\boxed{7}$."


def test_labels_cover_the_assistant_reply_only(tokenizer):
    ex = tokenize_chat(tokenizer, MESSAGES, RESPONSE, max_len=512)
    first = next(i for i, t in enumerate(ex.labels) if t != IGNORE)
    assert all(t == IGNORE for t in ex.labels[:first]) and ex.labels[first:] == ex.input_ids[first:]
    assert tokenizer.decode(ex.input_ids[first:]) == RESPONSE + tokenizer.eos_token
    # the prompt is what generation starts from, and the whole matches the chat template's
    # own assistant mask (its {% generation %} block, less the newline after the turn)
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(ex.input_ids[:first]) == prompt
    full = tokenizer.apply_chat_template(MESSAGES + [{"role": "assistant", "content": RESPONSE}], tokenize=True,
                                         return_dict=True, return_assistant_tokens_mask=True)
    assert full["input_ids"][:len(ex)] == ex.input_ids
    assert [i for i, m in enumerate(full["assistant_masks"]) if m] == list(range(first, len(ex)))
    cut = tokenize_chat(tokenizer, MESSAGES, RESPONSE, max_len=first + 3)
    assert len(cut) == first + 3 and cut.n_targets == 3


def test_packed_rows_give_the_same_loss_as_separate_samples(tiny_dir, tokenizer):
    """Packing must not let a sample attend to the one before it."""
    from m2rl.models import load_model
    from m2rl.train.loss import nll_sum

    model = load_model(tiny_dir, "float32").eval()
    exs = [tokenize_chat(tokenizer, [{"role": "user", "content": f"Question {i} " * (i + 1)}],
                         f"Answer {i}." * (3 - i % 3 + 1), 512) for i in range(5)]
    rows = pack(exs, max_len=2 * max(len(e) for e in exs))
    assert 1 < len(rows) < len(exs)
    with torch.no_grad():
        packed, n_packed = nll_sum(model, collate(rows, tokenizer.pad_token_id, packed=True))
        single, n_single = nll_sum(model, collate(exs, tokenizer.pad_token_id, packed=False))
    assert n_packed == n_single == sum(e.n_targets for e in exs)
    assert float(packed) == pytest.approx(float(single), rel=1e-5)


# --- DeepSpeed engines, in this process -----------------------------------------------

@pytest.fixture(scope="module")
def dist():
    """One-process torch.distributed + DeepSpeed comm; the environment is restored after."""
    from m2rl.train.distributed import destroy, init_distributed

    saved = dict(os.environ)
    env = init_distributed()
    yield env
    destroy()
    os.environ.clear()
    os.environ.update(saved)


def _model(seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                        tie_word_embeddings=True))


def _train(engine, steps: int, start: int = 0) -> list[float]:
    out = []
    for s in range(start, start + steps):
        x = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(s))
        loss = engine(input_ids=x, labels=x).loss + 0.0 * torch.rand(())  # consumes the torch RNG
        engine.backward(loss)
        engine.step()
        out.append(float(loss.detach()))
    return out


@pytest.mark.parametrize("stage", [2, 3])
def test_engine_checkpoint_resumes_exactly(dist, tmp_path, stage):
    from m2rl.train.checkpoint import load_engine, save_engine
    from m2rl.train.engine import build_engine, current_lr

    ecfg, ocfg = EngineConfig(zero_stage=stage, micro_batch_size=4), OptimConfig(lr=1e-2, warmup_steps=2)
    engine, info = build_engine(_model(), ecfg, ocfg, total_steps=8)
    assert info.zero_stage == stage and info.precision == "fp32" and info.init_s < 60
    _train(engine, 3)
    save_engine(engine, tmp_path, {"step": 3, "note": "x"})
    after = _train(engine, 3, start=3) + [current_lr(engine), float(torch.rand(()))]

    fresh, _ = build_engine(_model(seed=1), ecfg, ocfg, total_steps=8)  # other weights, until loaded
    torch.manual_seed(123)
    client = load_engine(fresh, tmp_path)
    assert client["step"] == 3 and client["note"] == "x"
    assert _train(fresh, 3, start=3) + [current_lr(fresh), float(torch.rand(()))] == after


def test_a_second_process_group_in_one_process_gets_a_working_engine(dist):
    """destroy() + init_distributed() again (one pytest process, several fixtures) must not leave
    DeepSpeed holding groups of the destroyed world: its engine would fail to broadcast."""
    from m2rl.train.distributed import destroy, init_distributed
    from m2rl.train.engine import build_engine

    build_engine(_model(), EngineConfig(zero_stage=2, micro_batch_size=4), OptimConfig(lr=1e-2), total_steps=2)
    destroy()
    init_distributed()
    engine, _ = build_engine(_model(), EngineConfig(zero_stage=2, micro_batch_size=4), OptimConfig(lr=1e-2),
                             total_steps=2)
    assert len(_train(engine, 1)) == 1


@pytest.mark.parametrize("stage", [0, 3])
def test_grad_norm_is_reported_and_clipped(dist, stage):
    from m2rl.train.engine import build_engine, grad_norm

    engine, _ = build_engine(_model(), EngineConfig(zero_stage=stage, micro_batch_size=4),
                             OptimConfig(lr=1e-2, grad_clip=1.0), total_steps=4)
    _train(engine, 1)
    norm = grad_norm(engine)
    assert norm is not None and math.isfinite(norm) and norm > 0


def test_export_from_zero3_loads_in_transformers_with_tied_embeddings(dist, tmp_path, tiny_dir, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from m2rl.models import load_model
    from m2rl.train.engine import build_engine
    from m2rl.train.export import export_hf, gather_state_dict

    model = load_model(tiny_dir, "float32")
    engine, _ = build_engine(model, EngineConfig(zero_stage=3, micro_batch_size=2), OptimConfig(lr=1e-2), 4)
    batch = collate([tokenize_chat(tokenizer, MESSAGES, RESPONSE, 512)] * 2, tokenizer.pad_token_id, False)
    for _ in range(2):  # move the weights away from the initial ones
        engine.backward(engine(**{k: v for k, v in batch.items() if k != "labels"}, labels=batch["labels"]).loss)
        engine.step()
    full = gather_state_dict(engine)
    out = export_hf(engine, tmp_path / "export", tokenizer)
    assert out == tmp_path / "export" and not list(tmp_path.glob(".export.tmp-*"))
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()  # re-tied
    got = loaded.state_dict()
    assert set(got) == set(full) and all(torch.equal(got[k], full[k]) for k in full)
    assert not torch.equal(full["model.embed_tokens.weight"], load_model(tiny_dir).model.embed_tokens.weight)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = loaded.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]


def test_logger_writes_tensorboard_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from m2rl.train.progress import TrainLogger

    logger = TrainLogger(tmp_path, total_steps=3, interactive=False)
    for step in (1, 2, 3):
        logger.log(step, {"loss": 1.0 / step, "lr": 0.1, "grad_norm": None})
    logger.log(3, {"loss": 0.5}, section="eval")
    logger.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert {"train/loss", "train/lr", "eval/loss"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]
    assert "train/grad_norm" not in acc.Tags()["scalars"]
    TrainLogger(tmp_path, total_steps=3, enabled=False).log(1, {"loss": 1.0})  # other ranks: no-op


def test_interactive_runs_get_a_progress_bar(capsys):
    from m2rl.train.progress import TrainLogger

    logger = TrainLogger(None, total_steps=4, interactive=True, initial_step=1)  # resumed after step 1
    for step in (2, 3, 4):
        logger.log(step, {"loss": 1.0 / step})
    logger.close()
    err = capsys.readouterr().err
    assert "train: 100%" in err and "4/4" in err and "loss=0.25" in err
