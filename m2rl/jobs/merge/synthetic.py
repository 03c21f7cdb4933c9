"""Small HF models and perturbed "task models" for the merge's tests and benchmark.

`build_base` writes a tiny Qwen3 (tied embeddings: no lm_head tensor in the file) or
Llama (untied) causal LM with a word-level tokenizer; `derive_task_model` writes a copy
of any safetensors HF dir whose floating tensors moved by seeded noise, tensor by
tensor (the file layout, config and tokenizer are the source's).
"""
from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import torch


def tiny_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, "<eos>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def build_base(out: str | Path, arch: str = "qwen3", vocab_size: int = 256, hidden: int = 64, layers: int = 2,
               seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A tiny causal LM saved with save_pretrained: qwen3 ties its embeddings, llama does not."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=2, eos_token_id=2, pad_token_id=1)
    if arch == "qwen3":
        cfg, cls = Qwen3Config(head_dim=hidden // 4, tie_word_embeddings=True, **common), Qwen3ForCausalLM
    elif arch == "llama":
        cfg, cls = LlamaConfig(tie_word_embeddings=False, **common), LlamaForCausalLM
    else:
        raise ValueError(f"arch must be qwen3 or llama, not {arch!r}")
    torch.manual_seed(seed)
    model = cls(cfg).to(dtype)
    with torch.no_grad():  # norms start at 1.0: give them some spread, as trained ones have
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.05 * torch.randn_like(p))
    model.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=2, pad_token_id=1, max_new_tokens=8)
    out = Path(out)
    model.save_pretrained(out)
    tiny_tokenizer(vocab_size).save_pretrained(out)
    return out


def derive_task_model(src: str | Path, out: str | Path, seed: int, scale: float = 0.01,
                      density: float = 1.0) -> Path:
    """A copy of `src` with every floating tensor moved by scale·std(tensor)·N(0, 1) on a
    random `density` fraction of its entries (seeded by `seed` and the tensor's name)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy2(f, out / f.name)
    for f in sorted(src.glob("*.safetensors")):
        tensors = {}
        with safe_open(f, framework="pt") as sf:
            meta = sf.metadata()
            for name in sf.keys():
                t = sf.get_tensor(name)
                if t.is_floating_point() and t.numel() > 1:
                    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                    x = t.float()
                    noise = torch.randn(x.shape, generator=g) * (scale * float(x.std()) + 1e-8)
                    if density < 1:
                        noise *= torch.rand(x.shape, generator=g) < density
                    t = (x + noise).to(t.dtype)
                tensors[name] = t
        save_file(tensors, out / f.name, metadata=meta)
    return out


def write_model(out: str | Path, tensors: dict[str, torch.Tensor], config: dict | None = None,
                shards: int = 1) -> Path:
    """A minimal model dir: config.json and `tensors` split over `shards` safetensors
    files (with an index when there are several)."""
    import json

    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config or {"model_type": "toy", "architectures": ["Toy"]}))
    names = sorted(tensors)
    groups = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for i, group in enumerate(groups):
        fname = "model.safetensors" if shards == 1 else f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k].clone().contiguous() for k in group}, out / fname, metadata={"format": "pt"})
        weight_map.update({k: fname for k in group})
    if shards > 1:
        (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out
