"""Exact k-th largest value of a stream of non-negative float32 values, in bounded memory.

The bit pattern of a non-negative IEEE float32, read as an int32, orders like the value.
One pass counts the values by their top 16 bits (32768 bins: the sign bit is 0), which
gives the bin holding the k-th largest; a second pass counts the values of that bin only
by their low 16 bits, which gives its exact bit pattern. Two histograms of 64k counts per
selection, whatever the number of values: this is how TIES' top-k over a whole model's
flattened task vector is found without loading the model, and how per-tensor selections
run chunk by chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_HI_BINS = 1 << 15
_LO_BINS = 1 << 16


@dataclass(frozen=True)
class Threshold:
    """The k-th largest value `value`; `n_greater` values are strictly larger and
    `n_equal` equal to it. Keeping exactly k values keeps all the larger ones and the
    first `k - n_greater` equal ones."""

    value: float
    n_greater: int
    n_equal: int
    k: int

    @property
    def ties_to_keep(self) -> int:
        return self.k - self.n_greater


def _bits(x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32:
        raise TypeError(f"selection works on float32 values, got {x.dtype}")
    return x.contiguous().view(torch.int32).reshape(-1)


class KthLargest:
    """Feed every value to `add_hi`, then call `split`; if `needs_lo`, feed the same values
    again to `add_lo`; then `result()`. Values must be >= 0 (magnitudes, variances) and
    finite. A stream given in one piece is settled by `split` from the piece it holds."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.n = 0
        self._hi = np.zeros(_HI_BINS, dtype=np.int64)
        self._lo: np.ndarray | None = None
        self._bin = -1
        self._above_bin = 0  # values in higher bins
        self._whole: torch.Tensor | None = None  # the stream, while it is one piece
        self._done: Threshold | None = None

    def add_hi(self, x: torch.Tensor) -> None:
        b = _bits(x)
        if not b.numel():
            return
        self._whole = x.reshape(-1) if self.n == 0 else None
        self._hi += torch.bincount(b >> 16, minlength=_HI_BINS).numpy()
        self.n += b.numel()

    def split(self) -> None:
        if self.k > self.n:
            raise ValueError(f"k={self.k} but only {self.n} values were given")
        above = np.cumsum(self._hi[::-1])[::-1]  # values at or above each bin
        self._bin = int(np.flatnonzero(above >= self.k)[-1])  # the highest bin reaching k
        self._above_bin = int(above[self._bin] - self._hi[self._bin])
        self._lo = np.zeros(_LO_BINS, dtype=np.int64)
        if self._whole is not None:  # one piece, still in memory: no second pass over the data
            x, self._whole = self._whole, None
            self.add_lo(x)
            self.result()

    @property
    def needs_lo(self) -> bool:
        return self._done is None

    def add_lo(self, x: torch.Tensor) -> None:
        # only the values in the bin: typically a few percent of them
        b = _bits(x)
        inside = b[(b >> 16) == self._bin]
        if inside.numel():
            self._lo += torch.bincount(inside & 0xFFFF, minlength=_LO_BINS).numpy()

    def result(self) -> Threshold:
        if self._done is not None:
            return self._done
        need = self.k - self._above_bin  # >= 1: the rank of the k-th value inside the bin
        above = np.cumsum(self._lo[::-1])[::-1]
        lo = int(np.flatnonzero(above >= need)[-1])
        n_equal = int(self._lo[lo])
        n_greater = self._above_bin + int(above[lo]) - n_equal
        value = np.array([(self._bin << 16) | lo], dtype=np.int32).view(np.float32)[0]
        self._done = Threshold(float(value), n_greater, n_equal, self.k)
        return self._done


class TopKMask:
    """Keep exactly the k largest values of a stream (all those above the threshold, and
    ties in stream order): call with consecutive chunks of the same stream. The mask is
    bool, or 1.0/0.0 in `dtype` (to multiply by: torch converts a bool factor slowly)."""

    def __init__(self, t: Threshold):
        self.t = t
        self._value = torch.tensor(t.value, dtype=torch.float32)
        self._ties_left = t.ties_to_keep

    def __call__(self, x: torch.Tensor, dtype: torch.dtype = torch.bool) -> torch.Tensor:
        if self._ties_left >= self.t.n_equal:  # every tie is kept (the usual case)
            return torch.ge(x, self._value, out=torch.empty(x.shape, dtype=dtype))
        keep = x > self._value
        if self._ties_left > 0:
            ties = (x.reshape(-1) == self._value).nonzero().reshape(-1)[:self._ties_left]
            keep.view(-1)[ties] = True
            self._ties_left -= ties.numel()
        return keep.to(dtype)
