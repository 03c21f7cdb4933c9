"""Where a benchmark's records come from: a file inside an installed package, a local file
in the published format, or a hub dataset id (via `datasets`, read at run time).

`records(source, ...)`: an existing path is read as a file (.jsonl, .json (a list, or
{"data"/"rows": [...]}), .csv, .parquet, any of them .gz); an `hf://datasets/...` file URL
is read by `datasets` as a data file (for hub datasets published as plain files behind a
loading script, which datasets >= 4 no longer runs); anything else is a hub id, loaded with
`datasets.load_dataset(id, config, split=split)`.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path


def _text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")


def read_file(path: str | Path) -> list[dict]:
    path = Path(path)
    kind = path.name.removesuffix(".gz").rsplit(".", 1)[-1]
    if kind == "jsonl":
        return [json.loads(line) for line in _text(path).splitlines() if line.strip()]
    if kind == "json":
        data = json.loads(_text(path))
        if isinstance(data, dict):
            data = data.get("data", data.get("rows"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json benchmark file holds a list of records "
                             "(or {\"data\": [...]})")
        return data
    if kind == "csv":
        return list(csv.DictReader(io.StringIO(_text(path))))
    if kind == "parquet":
        import pyarrow.parquet as pq
        return pq.read_table(path).to_pylist()
    raise ValueError(f"{path}: unknown benchmark file type {kind!r} (use .jsonl, .json, .csv or .parquet)")


def read_hub(hub_id: str, config: str | None, split: str) -> list[dict]:
    import datasets

    return list(datasets.load_dataset(hub_id, config, split=split))


def read_hub_file(url: str) -> list[dict]:
    import datasets

    kind = url.removesuffix(".gz").rsplit(".", 1)[-1]
    kind = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}.get(kind)
    if kind is None:
        raise ValueError(f"{url}: unknown data file type (use .jsonl, .json, .csv or .parquet)")
    return list(datasets.load_dataset(kind, data_files=url, split="train"))


def records(source: str | Path, config: str | None = None, split: str = "test") -> list[dict]:
    if str(source).startswith("hf://"):
        return read_hub_file(str(source))
    path = Path(source).expanduser()
    if path.exists():
        return read_file(path)
    looks_like_file = path.name.removesuffix(".gz").rsplit(".", 1)[-1] in ("jsonl", "json", "csv", "parquet")
    if looks_like_file or str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):
        raise FileNotFoundError(f"benchmark source {source!r}: no such file, and not a hub id "
                                "(org/name)")
    return read_hub(str(source), config, split)


def need(record: dict, fields: tuple[str, ...], where: str) -> None:
    """A record without one of `fields` is an error naming it and the source."""
    missing = [f for f in fields if f not in record]
    if missing:
        raise ValueError(f"{where}: record lacks field(s) {missing} (has {sorted(record)[:12]}); "
                         "is the file in the benchmark's published format?")
