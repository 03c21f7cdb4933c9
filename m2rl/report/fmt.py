"""Number, duration and time formats of the report, and its row limits."""
from __future__ import annotations

import time
from pathlib import Path

MAX_ROWS = 200    # table rows in the report; the full data is in ledger.csv
MAX_NOTES = 100


def fmt_h(gpu_s: float | None) -> str:
    if gpu_s is None:
        return "n/a"
    h = gpu_s / 3600.0
    if h >= 10 or h == 0:
        return f"{h:.1f}"
    return f"{h:.2f}" if h >= 1 else f"{h:.4f}"


def fmt_dur(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 1:
        return f"{s:.2g} s"
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def fmt_pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def fmt_num(v: float | None, measured: bool = True) -> str:
    if v is None:
        return "n/a"
    s = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return s if measured else s + " (est.)"


def fmt_ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def rel(files: dict[str, Path], name: str, out: Path) -> tuple[Path, str] | None:
    """A plot's path and its link relative to the report's folder, if it was drawn."""
    p = files.get(name)
    return (p, str(p.relative_to(out))) if p else None
