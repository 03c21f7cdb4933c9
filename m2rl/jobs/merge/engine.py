"""The streaming merge: every tensor in chunks, every statistic in extra passes.

Tensors go in sorted-name order. Per tensor, the passes its method needs for statistics
that span the tensor (mergekit's per-tensor top-k, DARE's L1 rescale, SCE's variance
selection and weights), then a final pass that computes the merged chunks and appends
them to the output shards; each pass reads the base and the models chunk by chunk
(`chunk_elems` elements), except that a tensor that fits in one chunk is read once for
all its passes. TIES' top-k over a whole flattened task vector (semantics=paper) takes
two passes over every tensor before the first one is written. Memory: a few chunks per
model, whatever the models' size.

With `threads` >= 2, the next chunk is read (hashed, checked, its task vectors formed)
on a thread of its own while this one is computed, and merged chunks are written on
another (`pipeline.py`); torch's own threads get the cores left over. Buffers are
reused from chunk to chunk: a fresh buffer costs page faults on every use.

The output is built in a hidden temp dir beside its final place and renamed into place
once complete, so an interrupted merge never leaves a complete-looking output.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch
import xxhash

from m2rl.runtime import atomic

from . import methods
from .config import RECORD_NAME
from .inputs import Inputs
from .methods import Recipe
from .pipeline import ReadAhead, WriteBehind
from .select import KthLargest, Threshold, TopKMask
from .stio import CODES, DTYPES, InputError, OutTensor, ShardWriter, TensorInfo

log = logging.getLogger("m2rl.merge")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
SKIP_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json", "README.md", RECORD_NAME)


class Stopped(Exception):
    """`should_stop` asked the merge to stop (a preemption notice): nothing was published."""


def chunk_elems_for(chunk_mb: float) -> int:
    """Elements per chunk: a whole number of DARE's RNG blocks (so masks do not depend on it)."""
    blocks = max(1, int(chunk_mb * (1 << 20) / 4) // methods.RNG_BLOCK)
    return blocks * methods.RNG_BLOCK


def _ranges(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def default_threads() -> int:
    """Every core this process may run on (a Slurm job's allocation, a taskset)."""
    return len(os.sched_getaffinity(0))


class _Slot:
    """One chunk of every input: the base and the models' stacked rows (reused buffers)."""

    def __init__(self, n_models: int, chunk: int, dare: bool):
        self.base = torch.empty(chunk)
        self.flat = torch.empty(n_models * chunk)
        self.masks = torch.empty(n_models * chunk) if dare else None  # DARE's keep masks, drawn here
        self.raw: torch.Tensor | None = None  # an input's stored bytes, when not float32


class _Progress:
    """Tensors done, and MB/s of the bytes read and written for them: a tqdm bar on a
    terminal; elsewhere (a Slurm log) a log line every 30 s."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.desc, self.total, self.done, self.bytes, self.t0, self.logged = "", 0, 0, 0, 0.0, 0.0

    def start(self, desc: str, total: int) -> None:
        self.close()
        self.desc, self.total, self.done, self.bytes = desc, total, 0, 0
        self.t0 = self.logged = time.time()
        if self.enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="tensor", smoothing=0.1)

    def rate(self) -> float:
        return self.bytes / max(time.time() - self.t0, 1e-9) / 1e6

    def update(self, n: int, nbytes: int) -> None:
        self.done += n
        self.bytes += nbytes
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.rate():.0f} MB/s", refresh=False)
            self.bar.update(n)
        elif self.enabled and time.time() - self.logged >= 30:
            self.logged = time.time()
            log.info("%s: %.0f%% (%d of %d tensors, %.0f MB/s)", self.desc, 100 * self.done / max(self.total, 1),
                     self.done, self.total, self.rate())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Merger:
    def __init__(self, recipe: Recipe, inputs: Inputs, chunk_elems: int, out_dtype: str = "auto",
                 shard_bytes: int = 2000 << 20, progress: bool = False,
                 should_stop: Callable[[], bool] | None = None, threads: int | None = None):
        if chunk_elems % methods.RNG_BLOCK:
            raise ValueError(f"chunk_elems must be a multiple of {methods.RNG_BLOCK}")
        self.r, self.inp, self.chunk = recipe, inputs, chunk_elems
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.out_dtype, self.shard_bytes = out_dtype, shard_bytes
        self.progress = _Progress(progress)
        self.should_stop = should_stop or (lambda: False)
        self.plan: list[TensorInfo] = [inputs.base.tensors[k] for k in sorted(inputs.base.tensors)]
        self.floats = [t for t in self.plan if t.is_float]
        self.n_float = sum(t.numel for t in self.floats)
        self.thresholds: list[Threshold | None] = [None] * len(inputs.models)
        self.hashes = {name: xxhash.xxh3_128() for name, _ in inputs.all}
        self._cursor = {name: (0, 0) for name, _ in inputs.all}  # next (plan index, element) to hash
        self._plan_index = {t.name: i for i, t in enumerate(self.plan)}
        n = len(inputs.models)
        self._scratch_flat = torch.empty(n * chunk_elems)
        self._drawer = ThreadPoolExecutor(1, thread_name_prefix="merge-dare") \
            if recipe.dare and self.threads > 1 else None
        self.reader = ReadAhead(self._load, [_Slot(n, chunk_elems, recipe.dare) for _ in range(2)], self.threads > 1)

    # --- reading ------------------------------------------------------------------------

    def _read(self, who: int, t: TensorInfo, a: int, b: int, slot: _Slot | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """Elements [a, b) of tensor t of input `who` (-1: the base): a floating tensor's
        in float32 into `out` (float32, b - a elements), read through `slot`'s scratch
        when stored in another dtype; another's raw, in a fresh buffer. The bytes feed
        the input's hash when they are the next ones in plan order."""
        name, files = self.inp.all[who + 1]
        if not t.is_float:
            raw = files.read(t.name, a, b)
            self._hash(name, t, a, b, raw)
            return raw
        if t.dtype == "F32":
            x = raw = files.read(t.name, a, b, out=out)
        else:
            nbytes = (b - a) * t.itemsize
            if slot.raw is None or slot.raw.numel() < nbytes:
                slot.raw = torch.empty(max(nbytes, self.chunk * 8), dtype=torch.uint8)
            raw = files.read(t.name, a, b, out=slot.raw)
            x = out.copy_(raw)
        self._hash(name, t, a, b, raw)
        # a finite sum means finite values (a NaN or inf makes it non-finite); only an
        # overflowing sum of finite values needs the exact check
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
            bad = (~torch.isfinite(x)).nonzero()
            who_s = "the base" if who < 0 else f"model {name}"
            err = InputError(f"{who_s} ({files.path}): tensor {t.name} has {bad.numel()} non-finite value(s), "
                             f"the first at flat index {a + int(bad[0])}: a diverged or corrupt checkpoint")
            err.field = "merge.base" if who < 0 else f"merge.models.{name}"
            raise err
        return x

    def _hash(self, name: str, t: TensorInfo, a: int, b: int, raw: torch.Tensor) -> None:
        i = self._plan_index[t.name]
        if self._cursor[name] != (i, a):  # hashed by an earlier pass
            return
        if a == 0:
            self.hashes[name].update(f"{t.name}|{t.dtype}|{list(t.shape)}\n".encode())
        self.hashes[name].update(raw.view(torch.uint8).numpy())
        self._cursor[name] = (i, b) if b < t.numel else (i + 1, 0)

    def _inputs(self, t: TensorInfo, a: int, b: int):
        """The base's chunk [a, b), the models' stacked (N, b - a): their task vectors
        δ_i = m_i − base (the models themselves for `average`), and DARE's (N, b - a) keep
        masks (else None); for a tensor that is not floating, the base's raw chunk (every
        input read, to hash it). Valid until the
        next call for another chunk. A tensor that fits in one chunk is read once for all
        its passes: callers leave the stack unchanged, except the final pass, its last
        user. The chunk after this one in plan order is read meanwhile."""
        i = self._plan_index[t.name]
        if b < t.numel:
            after = (i, b, min(b + self.chunk, t.numel))
        elif i + 1 < len(self.plan):
            after = (i + 1, 0, min(self.chunk, self.plan[i + 1].numel))
        else:
            after = None
        return self.reader.get((i, a, b), after)

    def _load(self, key: tuple[int, int, int], slot: _Slot):
        """What `_inputs` returns for key (plan index, a, b), read into `slot`."""
        i, a, b = key
        t = self.plan[i]
        if t.numel == 0:
            for name, _ in self.inp.all:
                self._hash(name, t, 0, 0, torch.empty(0, dtype=torch.uint8))
            return None
        if not t.is_float:  # the models' are read to hash them
            raw = self._read(-1, t, a, b)
            for m in range(len(self.inp.models)):
                self._read(m, t, a, b)
            return raw
        n, models = b - a, len(self.inp.models)
        masks = None if slot.masks is None else slot.masks[:models * n].view(models, n)
        drawn = []
        if masks is not None:  # drawn on a thread of their own while the inputs are read
            draw = functools.partial(methods.keep_mask, self.r.seed, tensor=t.name, start=a, stop=b,
                                     keep=1 - self.r.drop_p)
            drawn = [self._drawer.submit(draw, model=self.r.names[m], out=masks[m]) if self._drawer else
                     draw(model=self.r.names[m], out=masks[m]) for m in range(models)]
        base = self._read(-1, t, a, b, slot, slot.base[:n])
        stack = slot.flat[:models * n].view(models, n)
        for m in range(models):
            self._read(m, t, a, b, slot, stack[m])
            if self.r.method != "average":
                stack[m].sub_(base)
        for fut in drawn:
            if self._drawer:
                fut.result()
        return base, stack, masks

    def _task_vectors(self, t: TensorInfo, a: int, deltas: torch.Tensor, masks: torch.Tensor | None,
                      st: "_TensorState", select: Callable | None = None, inplace: bool = False) -> torch.Tensor:
        """τ: the deltas after whatever DARE, trims and SCE selection are known by now
        (`deltas` itself, unchanged, when there is nothing to apply)."""
        if not (inplace or self.r.dare or st.trims is not None or select is not None):
            return deltas
        tv = deltas if inplace else self._scratch(deltas).copy_(deltas)
        for i in range(tv.shape[0]):
            if self.r.dare:
                methods.dare_(tv[i], self.r, i, t.name, a, st.l1[i] if st.l1 else None, masks[i])
            if st.trims is not None:
                tv[i].mul_(st.trims[i](tv[i].abs(), torch.float32))
        if select is not None:
            tv.mul_(select(tv.var(0, unbiased=False), torch.float32))
        return tv

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A reused (N, n) buffer for the τ of a pass that must leave the deltas unchanged:
        valid until the next chunk's (a fresh 32 MB buffer costs 8192 page faults)."""
        return self._scratch_flat[:like.numel()].view(like.shape)

    def _magnitudes(self, st: "_TensorState"):
        """values(t, a, b) for `_select`: each model's |τ| over a chunk (in the scratch
        buffer: consumed before the next chunk)."""
        def values(t, a, b):
            _, deltas, masks = self._inputs(t, a, b)
            tv = self._task_vectors(t, a, deltas, masks, st)
            return enumerate(torch.abs(deltas, out=self._scratch(deltas)) if tv is deltas else tv.abs_())
        return values

    # --- statistics ----------------------------------------------------------------------

    def _global_thresholds(self) -> None:
        """paper TIES: each task vector's k-th largest magnitude over the whole model."""
        k = int(self.n_float * self.r.density) + 1  # the TIES reference keeps |δ| >= kthvalue(D - int(D·density))
        self.thresholds = self._select(self.floats, self._magnitudes(_TensorState()), [k] * len(self.inp.models),
                                       desc="TIES top-k over the whole model")

    def _tensor_state(self, t: TensorInfo) -> "_TensorState":
        r, st, n = self.r, _TensorState(), len(self.inp.models)
        ranges = _ranges(t.numel, self.chunk)
        if r.dare and not r.paper:  # mergekit's L1 rescale, per tensor and model
            before, after = [0.0] * n, [0.0] * n
            for a, b in ranges:
                _, deltas, masks = self._inputs(t, a, b)
                for i, d in enumerate(deltas):
                    mag = d.abs()  # |δ|·mask = |δ·mask|: the mask is 1.0 or 0.0
                    before[i] += float(mag.sum())
                    after[i] += float(mag.mul_(masks[i]).sum())
            st.l1 = [methods.l1_scale(x, y) for x, y in zip(before, after)]
        if r.trim == "global":
            st.trims = [_at_least(th.value) for th in self.thresholds]
        elif r.trim == "tensor":
            k = max(1, int(r.density * t.numel))
            st.trims = [TopKMask(th) for th in self._select([t], self._magnitudes(st), [k] * n)]
        if r.method == "sce":
            self._sce_state(t, ranges, st)
        return st

    def _select(self, tensors: list[TensorInfo], values, ks: list[int], desc: str | None = None) -> list[Threshold]:
        """Exact thresholds of the k largest values of each stream that `values(t, a, b)`
        yields (as (stream, values) pairs) over the chunks of `tensors`."""
        sels = [KthLargest(k) for k in ks]
        for p, add in enumerate(("add_hi", "add_lo")):
            if p == 1 and not any(s.needs_lo for s in sels):
                break
            if desc:
                self.progress.start(f"{desc}, pass {p + 1}/2", len(tensors))
            for t in tensors:
                for a, b in _ranges(t.numel, self.chunk):
                    if desc:
                        self._check_stop()
                    for i, x in values(t, a, b):
                        getattr(sels[i], add)(x)
                if desc:
                    self.progress.update(1, t.nbytes * len(self.inp.all))
            if p == 0:
                for s in sels:
                    s.split()
        if desc:
            self.progress.close()
        return [s.result() for s in sels]

    def _sce_state(self, t: TensorInfo, ranges, st: "_TensorState") -> None:
        r, n = self.r, len(self.inp.models)

        def variance(t, a, b):
            return [(0, self._inputs(t, a, b)[1].var(0, unbiased=False))]

        if r.select_topk < 1:  # mergekit's k counts the elements whose variance is nonzero
            nonzero = sum(int(torch.count_nonzero(variance(t, a, b)[0][1])) for a, b in ranges)
            k = int(nonzero * r.select_topk)
            if k == 0:
                st.select = lambda: (lambda var, dtype=torch.bool: torch.zeros_like(var, dtype=dtype))
            else:
                (thr,) = self._select([t], variance, [k])
                st.select = lambda: TopKMask(thr)  # a fresh tie budget for every pass
        squares = [0.0] * n
        select = st.select() if st.select else None
        for a, b in ranges:
            _, deltas, masks = self._inputs(t, a, b)
            tv = self._task_vectors(t, a, deltas, masks, st, select) if select else deltas
            for i in range(n):
                squares[i] += float(torch.dot(tv[i], tv[i]))
        st.sce_weights = methods.sce_weights(r, [s / max(t.numel, 1) for s in squares])

    def _check_stop(self) -> None:
        if self.should_stop():
            raise Stopped("merge stopped on request (preemption); nothing was published")

    # --- the merge -------------------------------------------------------------------------

    def _out_code(self, t: TensorInfo) -> str:
        if not t.is_float or self.out_dtype == "auto":
            return t.dtype
        return CODES[getattr(torch, self.out_dtype)]

    def _merge_tensor(self, t: TensorInfo, writer: WriteBehind) -> None:
        dtype = DTYPES[self._out_code(t)]
        if t.numel == 0:
            self._inputs(t, 0, 0)
            writer.write(t.name, torch.empty(0, dtype=dtype))
            return
        if not t.is_float:  # integer buffers: the base's, unchanged
            for a, b in _ranges(t.numel, self.chunk):
                writer.write(t.name, self._inputs(t, a, b))
            return
        st = self._tensor_state(t)
        select = st.select() if st.select else None
        for a, b in _ranges(t.numel, self.chunk):
            base, stack, masks = self._inputs(t, a, b)
            tv = stack if self.r.method == "average" else \
                self._task_vectors(t, a, stack, masks, st, select, inplace=True)
            out = methods.combine(self.r, base, tv, st.sce_weights, out=writer.buffer(b - a),
                                  scratch=self._scratch(tv))
            if dtype != torch.float32:
                out = writer.buffer(b - a, dtype).copy_(out)
            writer.write(t.name, out)
        self.reader.forget()  # its stack was changed in place

    def run(self, out_dir: Path) -> dict:
        """Merge into `out_dir` (published atomically); returns a summary."""
        t0 = time.time()
        torch_threads = torch.get_num_threads()
        # the reader and writer threads take a core between them when there are 2 or more
        torch.set_num_threads(max(1, self.threads - 1))
        try:
            return self._run(Path(out_dir).absolute(), t0)
        finally:
            self.reader.close()
            if self._drawer is not None:
                self._drawer.shutdown(wait=True)
            torch.set_num_threads(torch_threads)

    def _run(self, out_dir: Path, t0: float) -> dict:
        _keep_freed_memory()
        for p in atomic.remove_leftovers(out_dir):
            log.info("removed %s, left by an interrupted merge", p)
        if self.r.trim == "global":
            self._global_thresholds()
        plan = [OutTensor(t.name, self._out_code(t), t.shape) for t in self.plan]
        with atomic.directory(out_dir) as tmp:
            writer = ShardWriter(tmp, plan, self.shard_bytes, metadata={"m2rl_merge": self.r.method})
            behind = WriteBehind(writer.write, self.chunk, self.threads > 1)
            try:
                self.progress.start(f"merge {self.r.method} ({self.r.semantics})", len(self.plan))
                for t in self.plan:
                    self._check_stop()
                    self._merge_tensor(t, behind)
                    self.progress.update(1, t.nbytes * len(self.inp.all) + t.numel * DTYPES[self._out_code(t)].itemsize)
                behind.flush()
                writer.finish()
                self.reader.close()
                if any(c != (len(self.plan), 0) for c in self._cursor.values()):
                    raise RuntimeError(f"internal error: inputs hashed only up to {self._cursor}")
            finally:
                behind.close()
                writer.abort()
                self.progress.close()
            self._copy_metadata(tmp)
            record = self._record(time.time() - t0, writer)
            atomic.write_json(tmp / RECORD_NAME, record)
        return record

    def _copy_metadata(self, tmp: Path) -> None:
        """config (with the output dtype), tokenizer, generation config: the base's."""
        src = self.inp.base.path
        for f in sorted(src.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix not in WEIGHT_SUFFIXES \
                    and f.name not in SKIP_FILES:
                shutil.copy2(f, tmp / f.name)
        cfg = dict(self.inp.base_config)
        if self.out_dtype != "auto":
            cfg["dtype"] = self.out_dtype
            if "torch_dtype" in cfg:
                cfg["torch_dtype"] = self.out_dtype
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    def _record(self, seconds: float, writer: ShardWriter) -> dict:
        def entry(name: str, files) -> dict:
            return {"path": str(files.path), "weights_xxh3_128": self.hashes[name].hexdigest(),
                    "config_sha256": hashlib.sha256((files.path / "config.json").read_bytes()).hexdigest()}

        rec = {"recipe": self.r.describe(), "base": entry("base", self.inp.base),
               "models": {n: entry(n, m) for n, m in zip(self.inp.names, self.inp.models)},
               "hash": "xxh3_128 over each tensor's 'name|dtype|shape' line and raw bytes, in sorted-name order "
                       "(independent of how the files are sharded)",
               "tensors": len(self.plan), "parameters": sum(t.numel for t in self.plan),
               "output_bytes": writer.total_bytes, "shards": len(writer.shards),
               "seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if any(self.thresholds):
            rec["ties_thresholds"] = {n: {"value": th.value, "k": th.k, "kept": th.n_greater + th.n_equal}
                                      for n, th in zip(self.inp.names, self.thresholds)}
        return rec


def _keep_freed_memory() -> None:
    """glibc: keep freed memory in the heap (no trim) and serve allocations up to 32 MB
    from it, not from fresh maps: a merge allocates the same sizes chunk after chunk, and
    every fresh page costs a fault (here about 1 s of system time per merge). Peak memory
    stays what it was."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (its maximum)


class _TensorState:
    def __init__(self, l1=None, trims=None, select=None, sce_weights=None):
        self.l1: list[float] | None = l1
        self.trims: list | None = trims
        self.select: Callable[[], Callable] | None = select
        self.sce_weights: torch.Tensor | None = sce_weights


def _at_least(value: float):
    v = torch.tensor(value, dtype=torch.float32)
    return lambda x, dtype=torch.bool: torch.ge(x, v, out=torch.empty(x.shape, dtype=dtype))

