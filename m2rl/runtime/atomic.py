"""Crash-safe writes: write to a temp path, fsync, rename, fsync the parent.

A reader sees either the old content or the new content, never a torn file, whatever
moment the writer dies at.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def publish_dir(tmp: Path, final: Path) -> None:
    """fsync every file under `tmp`, then rename it to `final` (replacing an older copy)."""
    fsync_tree(tmp)
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp dir beside `final`; on success publish it as `final`.

    On any exception the temp dir is removed and `final` is untouched. If the process
    dies, only a `.tmp-*` dir is left behind, which readers ignore.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(final: str | os.PathLike) -> list[Path]:
    """Remove the temp dirs (`directory`) and replaced dirs (`publish_dir`) that a killed
    writer of `final` left beside it; returns them. Only for a writer that knows no other
    writer of `final` is running."""
    final = Path(final)
    gone = []
    if final.parent.is_dir():
        for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*"):
            for p in final.parent.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
    return gone
