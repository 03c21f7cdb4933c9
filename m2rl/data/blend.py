"""The study's RL data: `nvidia/Nemotron-3-Nano-RL-Training-Blend` (NeMo Gym rows).

Rows are split into domains by their `dataset` field, as the study does: dapo17k and
skywork -> math, stem_mcqa -> science, instruction_following -> if, comp_coding -> code
(workbench, the agent domain, has no verifier here and is dropped). The prompt is
`responses_create_params.input`; the verifier fields are `expected_answer` (math,
science), `options` (science), `instruction_id_list`/`kwargs`/`prompt` (if) and
`verifier_metadata.unit_tests` (code). Some subsets ship with placeholders that NVIDIA's
`create_nanov3_jsonl.py` fills in: point `source` at the filled file. IF rows naming an
instruction outside the 25 IFEval checkers are dropped (and counted in the log).
"""
from __future__ import annotations

import json
import logging
import string
from pathlib import Path

log = logging.getLogger(__name__)

DOMAIN_RULES = (("dapo", "math"), ("skywork", "math"), ("math", "math"),
                ("stem_mcqa", "science"), ("mcqa", "science"),
                ("instruction_following", "if"), ("comp_coding", "code"), ("code", "code"))


def domain_of(dataset_name: str) -> str | None:
    name = (dataset_name or "").lower()
    return next((dom for pat, dom in DOMAIN_RULES if pat in name), None)


def _messages(row: dict) -> list[dict]:
    params = row.get("responses_create_params") or {}
    if isinstance(params, str):
        params = json.loads(params)
    msgs = []
    if params.get("instructions"):
        msgs.append({"role": "system", "content": params["instructions"]})
    raw = params.get("input") or []
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    for m in raw:
        content = m.get("content")
        if isinstance(content, list):  # Responses API parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        msgs.append({"role": m.get("role", "user"), "content": content or ""})
    return msgs


def _options(row: dict) -> list[str]:
    opts = row.get("options") or []
    if isinstance(opts, dict):
        opts = [{k: v} for k, v in opts.items()]
    pairs = {}
    for opt in opts:  # [{"A": "text"}, {"B": "text"}] (or a union struct with None elsewhere)
        for k, v in opt.items():
            if v is not None:
                pairs[k.upper()] = v
    return [pairs[c] for c in string.ascii_uppercase if c in pairs]


def convert_row(row: dict, index: int, known_instructions=None) -> dict | None:
    """A NeMo Gym blend row as a `Sample`, or None if it has no verifier here."""
    domain = domain_of(row.get("dataset", ""))
    if domain is None:
        return None
    if domain == "math":
        spec = {"answer": str(row.get("expected_answer") or row.get("answer") or "")}
    elif domain == "science":
        spec = {"choices": _options(row), "answer": str(row.get("expected_answer", "")).strip()}
    elif domain == "if":
        ids = list(row.get("instruction_id_list") or [])
        if known_instructions is not None and not set(ids) <= set(known_instructions):
            return None
        kwargs = [{k: v for k, v in (kw or {}).items() if v is not None} for kw in (row.get("kwargs") or [])]
        spec = {"instruction_id_list": ids, "kwargs": kwargs, "prompt": row.get("prompt") or ""}
    else:
        meta = row.get("verifier_metadata") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        unit = meta.get("unit_tests") or {}
        spec = {"tests": [{"input": i, "output": o} for i, o in zip(unit.get("inputs") or [], unit.get("outputs") or [])]}
    messages = _messages(row)
    if not messages or not any(spec.values()):
        return None
    sid = row.get("uuid") or row.get("id") or f"{row.get('dataset')}-{index}"
    return {"id": str(sid), "domain": domain, "messages": messages, "reward_spec": spec,
            "source": str(row.get("dataset"))}


def read_rows(source: str):
    """Rows of a local .jsonl/.parquet file or folder, or of a hub dataset id."""
    path = Path(source).expanduser()
    if not path.exists():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(source, repo_type="dataset",
                                      allow_patterns=["*.jsonl", "*.parquet", "**/*.jsonl", "**/*.parquet"]))
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix in (".jsonl", ".parquet") and not p.name.startswith("."))
    for f in files:
        if f.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(f).to_pylist()
        else:
            with open(f) as fh:
                yield from (json.loads(line) for line in fh if line.strip())


def load_blend(source: str) -> dict[str, list[dict]]:
    """Every convertible row of `source`, grouped by domain."""
    from m2rl.rewards.ifeval import registry

    known = registry()
    by_domain: dict[str, list[dict]] = {}
    dropped = 0
    for i, row in enumerate(read_rows(source)):
        sample = convert_row(row, i, known)
        if sample is None:
            dropped += 1
            continue
        by_domain.setdefault(sample["domain"], []).append(sample)
    log.info("%s: %s rows per domain, %d dropped (no verifier here)", source,
             {d: len(v) for d, v in by_domain.items()}, dropped)
    return by_domain
