"""The inputs of a merge, checked from their headers before anything is read or written.

Every model must have the base's architecture, vocabulary, tensor names, shapes and
kinds of dtype; the first difference found is an `InputError` naming the model and what
to fix. Values (a NaN, an inf) can only be checked while streaming: the merge does so on
every chunk it reads, and fails before its output is published.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .stio import InputError, ModelFiles

# config.json keys that change the tensors' meaning; anything else (dtype, versions,
# generation settings) may differ between a base and its fine-tunes
STRUCTURE_KEYS = ("model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size",
                  "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                  "tie_word_embeddings", "hidden_act", "moe_intermediate_size", "num_experts")


@dataclass
class Inputs:
    base: ModelFiles
    models: list[ModelFiles]
    names: list[str]
    base_config: dict

    @property
    def all(self) -> list[tuple[str, ModelFiles]]:
        return [("base", self.base), *zip(self.names, self.models)]

    def close(self) -> None:
        for _, m in self.all:
            m.close()


def _config(path: Path) -> dict:
    f = path / "config.json"
    if not f.is_file():
        raise InputError(f"{path} has no config.json (is it an HF model dir? training jobs export to <run>/export)")
    try:
        return json.loads(f.read_text())
    except ValueError as err:
        raise InputError(f"{f} is not valid JSON: {err}") from None


def _structure(cfg: dict) -> dict:
    out = {k: cfg.get(k) for k in STRUCTURE_KEYS}
    if isinstance(cfg.get("text_config"), dict):
        out["text_config"] = _structure(cfg["text_config"])
    return out


def _vocab(path: Path) -> dict[str, int] | None:
    """token -> id from tokenizer.json (model vocab and added tokens), None if absent."""
    f = path / "tokenizer.json"
    if not f.is_file():
        return None
    data = json.loads(f.read_text())
    vocab = (data.get("model") or {}).get("vocab")
    if isinstance(vocab, list):  # unigram: [[piece, score], ...]
        vocab = {piece: i for i, (piece, _) in enumerate(vocab)}
    out = dict(vocab or {})
    for tok in data.get("added_tokens") or []:
        out[tok["content"]] = tok["id"]
    return out


def _file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _check_vocab(base: Path, other: Path, name: str) -> None:
    if _file_hash(base / "tokenizer.json") == _file_hash(other / "tokenizer.json"):
        return
    a, b = _vocab(base), _vocab(other)
    if a is None or b is None or a == b:
        return
    diff = sorted(set(a.items()) ^ set(b.items()), key=lambda kv: kv[1])[:3]
    raise InputError(f"model {name} ({other}) has a different vocabulary from the base ({base}): "
                     f"{len(a)} vs {len(b)} tokens, e.g. {diff}; merged weights would mix token ids")


def open_inputs(base_dir: Path, model_dirs: dict[str, Path]) -> Inputs:
    """Open and check every input; the caller closes them (Inputs.close)."""
    base_dir = Path(base_dir)
    with _blame("merge.base"):
        base_cfg = _config(base_dir)
        base = ModelFiles(base_dir)
        if not any(t.is_float for t in base.tensors.values()):
            raise InputError(f"the base {base_dir} has no floating-point tensors to merge")
    opened = [base]
    try:
        models = []
        for name, d in model_dirs.items():
            with _blame(f"merge.models.{name}"):
                models.append(_open_model(base, base_dir, base_cfg, name, Path(d), opened))
        return Inputs(base, models, list(model_dirs), base_cfg)
    except BaseException:
        for m in opened:
            m.close()
        raise


@contextlib.contextmanager
def _blame(field: str):
    try:
        yield
    except InputError as err:
        err.field = field
        raise


def _open_model(base: ModelFiles, base_dir: Path, base_cfg: dict, name: str, d: Path, opened: list) -> ModelFiles:
    """One model, checked against the base (appended to `opened` once open)."""
    cfg = _config(d)
    want, got = _structure(base_cfg), _structure(cfg)
    if want != got:
        diffs = [f"{k}: base {want[k]!r}, model {got[k]!r}" for k in want if want[k] != got[k]]
        raise InputError(f"model {name} ({d}) has another architecture than the base ({base_dir}): "
                         + "; ".join(diffs))
    _check_vocab(base_dir, d, name)
    m = ModelFiles(d)
    opened.append(m)
    _check_tensors(base, m, name)
    return m


def _check_tensors(base: ModelFiles, m: ModelFiles, name: str) -> None:
    missing = sorted(set(base.tensors) - set(m.tensors))
    extra = sorted(set(m.tensors) - set(base.tensors))
    if missing:
        raise InputError(f"model {name} ({m.path}) lacks {len(missing)} tensor(s) of the base, e.g. "
                         f"{', '.join(missing[:3])}" + (" (tied vs untied embeddings?)" if any("lm_head" in t for t in missing) else ""))
    if extra:
        raise InputError(f"model {name} ({m.path}) has {len(extra)} tensor(s) the base lacks, e.g. "
                         f"{', '.join(extra[:3])}" + (" (tied vs untied embeddings?)" if any("lm_head" in t for t in extra) else ""))
    for t, bt in base.tensors.items():
        mt = m.tensors[t]
        if mt.shape != bt.shape:
            hint = " (a resized vocabulary?)" if "embed" in t or "lm_head" in t else ""
            raise InputError(f"model {name} ({m.path}): tensor {t} has shape {list(mt.shape)}, "
                             f"the base has {list(bt.shape)}{hint}")
        if mt.is_float != bt.is_float or (not bt.is_float and mt.dtype != bt.dtype):
            raise InputError(f"model {name} ({m.path}): tensor {t} is {mt.dtype}, the base's is {bt.dtype}")
