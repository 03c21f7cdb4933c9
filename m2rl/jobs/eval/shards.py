"""What an eval leaves on disk, per model in `<exp>/eval/<slug>/`:

* `shards/<benchmark>-NNNN.json.gz`: one shard of `eval.shard_prompts` prompts, every
  sample with its response, reward and verifier info, written atomically as it finishes;
  a preempted eval keeps every finished shard and redoes only the rest. A shard carries
  the fingerprint of what made it (model files, sampling, seed, scoring rule): a shard of
  another model or other settings is redone, never mixed in.
* `results.json` (the format m2rl/report/evals.py documents) and `samples.jsonl.gz` (one
  line per prompt: id, benchmark, responses, rewards, lengths, finish reasons, verifier
  info), written once every shard of the model is there.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from m2rl.runtime import atomic

SHARDS = "shards"
RESULTS = "results.json"
SAMPLES = "samples.jsonl.gz"


def model_fingerprint(path: str) -> str:
    """Names, sizes and times of a model dir's files (a hub id: the id itself)."""
    p = Path(path)
    files = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in p.glob("*") if f.is_file()) \
        if p.is_dir() else []
    return hashlib.sha256(json.dumps([str(path), files]).encode()).hexdigest()[:16]


def shard_path(out: Path, benchmark: str, index: int) -> Path:
    return out / SHARDS / f"{benchmark}-{index:04d}.json.gz"


def read_shard(path: Path, fingerprint: dict) -> dict | None:
    """The shard at `path` if it is complete and was made by `fingerprint`, else None."""
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError):
        return None
    return data if data.get("fingerprint") == fingerprint else None


def write_shard(path: Path, fingerprint: dict, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = json.dumps({"fingerprint": fingerprint, "rows": rows}).encode()
    atomic.write_bytes(path, gzip.compress(blob, compresslevel=5))


def write_samples(out: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic.write_bytes(out / SAMPLES, gzip.compress(text.encode(), compresslevel=5))


def read_samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress((out / SAMPLES).read_bytes()).decode().splitlines()]


def read_results(out: Path) -> dict | None:
    try:
        return json.loads((out / RESULTS).read_text())
    except (OSError, ValueError):
        return None
