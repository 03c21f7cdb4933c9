"""Reading ahead of the merge's compute and writing behind it, each on a thread of its own.

`ReadAhead` loads the chunk the merge will ask for next (read from the page cache, hashed,
checked, task vectors formed) into one of two reused buffer sets while the merge computes
on the other; `WriteBehind` writes the merged chunks from a ring of reused output
buffers while the next one is computed. Both keep their work in the order it was asked
for (one thread each), so the inputs' hashes and the output files come out exactly as
in a merge on one thread. File reads, file writes, xxhash and torch all release the GIL,
so the three threads use as many cores as there are. With `threaded=False` both do
their work inline, in the same order.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable

import torch


class ReadAhead:
    """`get(key, next_key)` returns `load(key, slot)` and starts loading `next_key` into
    the other slot; what an earlier `get` returned is invalid once `get` is called with
    another key (its slot gets reused). Asking for the key just returned returns the same
    data again, unless `forget()` was called (the caller changed it)."""

    def __init__(self, load: Callable[[Hashable, Any], Any], slots: list, threaded: bool):
        self.load, self.slots = load, slots
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="merge-read") if threaded else None
        self.held: tuple | None = None  # (key, slot index, data)
        self.ahead: tuple | None = None  # (key, slot index, future)
        self.hits = self.misses = 0

    def get(self, key: Hashable, next_key: Hashable | None) -> Any:
        if self.held is not None and self.held[0] == key:
            return self.held[2]
        if self.ahead is not None and self.ahead[0] == key:
            _, i, fut = self.ahead
            self.ahead = None
            self.hits += 1
            data = fut.result()
        else:
            self._drain()
            self.misses += 1
            i = 0 if self.held is None else self.held[1]
            self.held = None
            data = self.load(key, self.slots[i]) if self.pool is None else \
                self.pool.submit(self.load, key, self.slots[i]).result()
        self.held = (key, i, data)
        if next_key is not None and self.pool is not None:
            j = 1 - i
            self.ahead = (next_key, j, self.pool.submit(self.load, next_key, self.slots[j]))
        return data

    def forget(self) -> None:
        self.held = None

    def _drain(self) -> None:
        """Wait for a read-ahead nobody asked for; its error, if any, comes again when
        that key is read for real."""
        if self.ahead is not None:
            self.ahead[2].exception()
            self.ahead = None

    def close(self) -> None:
        self._drain()
        self.held = None
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class WriteBehind:
    """`buffer(n, dtype)` gives an output buffer of n elements from a ring of `depth`
    per dtype (waiting for the write that last used it); `write(name, x)` hands x (a
    buffer or any tensor nobody changes afterwards) to `write_fn`, in order."""

    def __init__(self, write_fn: Callable[[str, torch.Tensor], None], elems: int, threaded: bool, depth: int = 3):
        self.write_fn, self.elems, self.depth = write_fn, elems, depth
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="merge-write") if threaded else None
        self.rings: dict[torch.dtype, list] = {}
        self.turn: dict[torch.dtype, int] = {}
        self.last: Future | None = None
        self._owner: dict[int, list] = {}  # data_ptr of a ring buffer -> its ring entry

    def buffer(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        ring = self.rings.setdefault(dtype, [])
        i = self.turn.get(dtype, 0)
        self.turn[dtype] = (i + 1) % self.depth
        if i == len(ring):
            ring.append([torch.empty(self.elems, dtype=dtype), None])
            self._owner[ring[i][0].data_ptr()] = ring[i]
        entry = ring[i]
        if entry[1] is not None:
            entry[1].result()
            entry[1] = None
        return entry[0][:n]

    def write(self, name: str, x: torch.Tensor) -> None:
        if self.pool is None:
            self.write_fn(name, x)
            return
        self.last = fut = self.pool.submit(self.write_fn, name, x)
        entry = self._owner.get(x.data_ptr())
        if entry is not None:
            entry[1] = fut

    def flush(self) -> None:
        """Wait for every write; raise the first one's error."""
        if self.last is not None:
            self.last.result()
        for ring in self.rings.values():
            for entry in ring:
                if entry[1] is not None:
                    entry[1].result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
