"""Checkpoint directories with a `latest` pointer written last, and keep-last-N.

Layout under `root`:
    step_00000040/      one complete checkpoint (renamed into place only once whole)
    latest              text file naming the newest complete checkpoint dir
A crash at any moment leaves `latest` naming a complete dir: the dir is renamed into
place before the pointer moves, and old dirs are pruned only after it has moved.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import atomic
from .dist import DistEnv, barrier

_STEP_DIR = re.compile(r"^step_(\d{8})$")
META = "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    meta: dict


class CheckpointManager:
    def __init__(self, root: str | Path, keep_last: int = 2, dist: DistEnv | None = None):
        if keep_last < 1:
            raise ValueError("keep_last must be >= 1")
        self.root = Path(root)
        self.keep_last = keep_last
        self.dist = dist or DistEnv()
        self.last_save_seconds: float | None = None

    @staticmethod
    def dirname(step: int) -> str:
        return f"step_{step:08d}"

    def complete(self) -> list[Checkpoint]:
        """Every complete checkpoint, oldest first."""
        out = []
        if not self.root.is_dir():
            return out
        for p in self.root.iterdir():
            m = _STEP_DIR.match(p.name)
            if m and (p / META).is_file():
                try:
                    meta = json.loads((p / META).read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                out.append(Checkpoint(int(m.group(1)), p, meta))
        return sorted(out, key=lambda c: c.step)

    def latest(self) -> Checkpoint | None:
        """The checkpoint `latest` names; if the pointer is missing or names a dir that is
        gone (a manual deletion), the newest complete dir."""
        pointer = self.root / "latest"
        if pointer.is_file():
            p = self.root / pointer.read_text().strip()
            m = _STEP_DIR.match(p.name)
            if m and (p / META).is_file():
                return Checkpoint(int(m.group(1)), p, json.loads((p / META).read_text()))
        done = self.complete()
        return done[-1] if done else None

    def save(self, step: int, write: Callable[[Path], None], meta: dict | None = None) -> Checkpoint:
        """Call `write(tmp_dir)` on every rank (each writes its own shards), then rank 0
        renames the dir into place, moves `latest` and prunes old checkpoints.

        In a multi-process job every rank must call save() with the same step; the temp
        dir name is agreed through the step, so it must live on a shared filesystem.
        """
        t0 = time.time()
        final = self.root / self.dirname(step)
        staging = self.root / f".{self.dirname(step)}.staging"
        if self.dist.is_writer:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        barrier()
        write(staging)
        barrier()
        meta = {"step": step, "time": time.time(), **(meta or {})}
        if self.dist.is_writer:
            atomic.write_json(staging / META, meta)
            atomic.publish_dir(staging, final)
            atomic.write_text(self.root / "latest", final.name + "\n")
            self._prune()
        barrier()
        self.last_save_seconds = time.time() - t0
        return Checkpoint(step, final, meta)

    def _prune(self) -> None:
        done = self.complete()
        for ck in done[: max(0, len(done) - self.keep_last)]:
            shutil.rmtree(ck.path, ignore_errors=True)
        # leftovers of writers that died mid-save (any step: all ranks are past this save's
        # writes, and one run dir has one job at a time)
        for p in self.root.glob(".step_*"):
            shutil.rmtree(p, ignore_errors=True)
