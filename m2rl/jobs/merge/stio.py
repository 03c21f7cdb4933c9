"""Safetensors read and written piece by piece.

`ModelFiles` reads the headers of an HF model directory's (sharded) safetensors files and
then any flat element range of any tensor with positioned reads into a buffer the caller
reuses (or a fresh one): no memory map, so a process's resident memory holds only what
it asked for, not the pages of every file it touched (a mapped 4-model merge counts
every input page it touched in its RSS), and one copy from the page cache into a buffer
that stays in the CPU's caches costs about what the page faults of a map would. `ShardWriter` writes sharded safetensors with an index from a
plan of names, dtypes and shapes known up front, so each shard's header is written
first and the tensors' bytes follow as they are computed, one chunk at a time.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
CODES = {v: k for k, v in DTYPES.items()}
FLOAT_CODES = ("F64", "F32", "F16", "BF16")


class InputError(ValueError):
    """An input model that cannot be merged, said in words a user can act on; `field` is
    the config field that names that input, once known."""

    field = "merge.models"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors code
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset in `file`
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_CODES


def read_header(path: Path) -> tuple[dict, int]:
    """The JSON header of one safetensors file and the offset where its data starts."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise InputError(f"{path} is not a safetensors file (header length {n} is impossible)")
        try:
            header = json.loads(f.read(n))
        except ValueError as err:
            raise InputError(f"{path} has a corrupt safetensors header: {err}") from None
    return header, 8 + n


class ModelFiles:
    """The tensors of an HF model directory, located but not loaded."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()
        if not self.path.is_dir():
            raise InputError(f"{self.path} is not a directory (expected an HF model dir with config.json)")
        self.files = self._weight_files()
        self.tensors: dict[str, TensorInfo] = {}
        for f in self.files:
            self._add_file(f)
        self._fds: dict[Path, int] = {}

    def _weight_files(self) -> list[Path]:
        index = self.path / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError) as err:
                raise InputError(f"{index} is not a safetensors index ({err})") from None
            files = sorted({self.path / name for name in weight_map.values()})
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise InputError(f"{self.path}: the index names shard(s) that are missing: {', '.join(missing)}")
            return files
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            others = sorted(p.name for p in self.path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
            hint = f" (found {', '.join(others)}: re-save it with save_pretrained(safe_serialization=True))" \
                if others else ""
            raise InputError(f"{self.path} has no safetensors weights{hint}")
        return files

    def _add_file(self, f: Path) -> None:
        header, data_start = read_header(f)
        size = f.stat().st_size
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            if name in self.tensors:
                raise InputError(f"{self.path}: tensor {name} is stored twice ({self.tensors[name].file.name}, {f.name})")
            if meta.get("dtype") not in DTYPES:
                raise InputError(f"{f}: tensor {name} has unsupported dtype {meta.get('dtype')!r}")
            begin, end = meta["data_offsets"]
            info = TensorInfo(name, meta["dtype"], tuple(int(s) for s in meta["shape"]), f, data_start + begin, end - begin)
            if info.nbytes != info.numel * info.itemsize:
                raise InputError(f"{f}: tensor {name} has {info.nbytes} bytes for shape {list(info.shape)}")
            if data_start + end > size:
                raise InputError(f"{f} is truncated: tensor {name} ends at byte {data_start + end}, "
                                 f"the file has {size} (an interrupted copy or download?)")
            self.tensors[name] = info

    def read(self, name: str, start: int = 0, stop: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Elements [start, stop) of the flattened tensor, in its stored dtype: into `out`
        (a contiguous buffer of at least that many bytes, reused by the caller) or a fresh one."""
        info = self.tensors[name]
        stop = info.numel if stop is None else stop
        item = info.itemsize
        if out is None:
            buf = torch.empty((stop - start) * item, dtype=torch.uint8)
        else:
            buf = out.reshape(-1).view(torch.uint8)[:(stop - start) * item]
        view = memoryview(buf.numpy())
        fd = self._fds.get(info.file)
        if fd is None:
            fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        pos, offset = 0, info.start + start * item
        while pos < len(view):
            got = os.preadv(fd, [view[pos:]], offset + pos)
            if got <= 0:
                raise InputError(f"{info.file}: unexpected end of file reading {name}")
            pos += got
        return buf.view(DTYPES[info.dtype])

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> "ModelFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = DTYPES[self.dtype].itemsize
        for s in self.shape:
            n *= s
        return n


class ShardWriter:
    """Writes `plan`'s tensors, in plan order and chunk by chunk, into shards of at most
    `shard_bytes` (a larger tensor gets a shard of its own), then the index."""

    def __init__(self, out_dir: Path, plan: Iterable[OutTensor], shard_bytes: int, metadata: dict | None = None):
        self.out_dir = Path(out_dir)
        self.metadata = {"format": "pt", **(metadata or {})}
        shards: list[list[OutTensor]] = [[]]
        size = 0
        for t in plan:
            if shards[-1] and size + t.nbytes > shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append(t)
            size += t.nbytes
        n = len(shards)
        self.shards = [(SINGLE_NAME if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors", s)
                       for i, s in enumerate(shards)]
        self._order = [(fname, t) for fname, s in self.shards for t in s]
        self._pos = 0  # index into _order of the tensor being written
        self._written = 0  # bytes of it written so far
        self._file = None
        self.total_bytes = sum(t.nbytes for _, t in self._order)

    def _header(self, tensors: list[OutTensor]) -> bytes:
        header, offset = {"__metadata__": self.metadata}, 0
        for t in tensors:
            header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
            offset += t.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-aligned
        return struct.pack("<Q", len(raw)) + raw

    @property
    def next_name(self) -> str | None:
        return self._order[self._pos][1].name if self._pos < len(self._order) else None

    def write(self, name: str, chunk: torch.Tensor) -> None:
        fname, t = self._order[self._pos]
        if name != t.name:
            raise RuntimeError(f"writer expected {t.name}, got {name}")
        if chunk.dtype != DTYPES[t.dtype]:
            raise RuntimeError(f"{name}: chunk dtype {chunk.dtype}, planned {t.dtype}")
        if self._file is None:
            tensors = next(s for f, s in self.shards if f == fname)
            self._file = open(self.out_dir / fname, "wb")
            self._file.write(self._header(tensors))
        data = chunk.contiguous().reshape(-1).view(torch.uint8).numpy()
        self._file.write(memoryview(data))
        self._written += data.nbytes
        if self._written > t.nbytes:
            raise RuntimeError(f"{name}: {self._written} bytes written, planned {t.nbytes}")
        if self._written == t.nbytes:
            self._pos += 1
            self._written = 0
            if self._pos == len(self._order) or self._order[self._pos][0] != fname:
                self._file.close()
                self._file = None

    def finish(self) -> None:
        while self._pos < len(self._order) and self._order[self._pos][1].nbytes == 0:
            self.write(self._order[self._pos][1].name, torch.empty(0, dtype=DTYPES[self._order[self._pos][1].dtype]))
        if self._pos != len(self._order):
            raise RuntimeError(f"output incomplete: {self.next_name} and later tensors were never written")
        index = {"metadata": {"total_size": self.total_bytes},
                 "weight_map": {t.name: fname for fname, t in self._order}}
        (self.out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
