"""The report's PNG plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .compare import Comparison, Group  # noqa: E402
from .evals import EvalResult  # noqa: E402

ARM_COLORS = {"separate": "#3182ce", "mixed": "#dd6b20", "opd": "#38a169", "base": "#718096",
              "eval": "#805ad5", "unattributed": "#e53e3e"}
DOMAIN_COLORS = {"math": "#2b6cb0", "code": "#4299e1", "science": "#63b3ed", "if": "#90cdf4", "merge": "#1a365d"}
MAX_RUNS = 40
MAX_SEGMENTS = 12
DPI = 110


def unit(max_s: float, device: str = "GPU") -> tuple[str, float]:
    """Hours for real runs; seconds when everything is under a GPU-hour (toy runs)."""
    return (f"{device}-hours", 3600.0) if max_s >= 3600.0 else (f"{device}-seconds", 1.0)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _seg_color(t) -> str:
    if t.run.stage == "merge":
        return DOMAIN_COLORS["merge"]
    return DOMAIN_COLORS.get(t.run.domain or "", ARM_COLORS.get(t.run.arm, "#a0aec0"))


def arms(c: Comparison, path: Path, device: str = "GPU") -> Path | None:
    """Stacked horizontal bars: what each arm of the comparison cost, run by run."""
    bars: list[tuple[str, Group, list[tuple]]] = []
    for g in (c.separate, c.mixed, c.opd, c.opd_teachers):
        if g.runs:
            teachers = g is c.opd_teachers
            segs = [(t.run.key, t.gpu_s, _seg_color(t), teachers and t.run.arm != "opd") for t in g.runs]
            if len(segs) > MAX_SEGMENTS:  # many runs: the largest, then the rest as one segment
                segs.sort(key=lambda x: -x[1])
                rest = segs[MAX_SEGMENTS - 1:]
                segs = segs[:MAX_SEGMENTS - 1] + [(f"/{len(rest)} more", sum(x[1] for x in rest), "#a0aec0",
                                                   teachers)]
            bars.append((g.label, g, segs))
    if not bars:
        return None
    top = max(g.gpu_s for _, g, _ in bars)
    name, div = unit(top, device)
    fig, ax = plt.subplots(figsize=(10, 1.1 + 0.75 * len(bars)))
    sep = c.separate_rl.gpu_s
    for y, (label, g, segs) in enumerate(reversed(bars)):
        left = 0.0
        for key, s, color, hatch in segs:
            ax.barh(y, s / div, left=left, color=color, edgecolor="white", hatch="//" if hatch else None,
                    alpha=0.55 if hatch else 1.0)
            if s > 0.035 * top:
                ax.text(left + s / div / 2, y, key.split("/", 1)[-1], ha="center", va="center", fontsize=7.5,
                        color="white" if not hatch else "black")
            left += s / div
        txt = f"{g.gpu_s / div:,.1f}"
        if sep and g is not c.separate:
            txt += f"  ({g.gpu_s / sep:.1%} of separate RL)"
        ax.text(left, y, "  " + txt, va="center", fontsize=9)
    ax.set_yticks(range(len(bars)), [b[0] for b in reversed(bars)])
    ax.set_xlabel(name)
    ax.set_xlim(0, top / div * 1.45)
    title = f"{device} cost per arm"
    if c.headline is not None:
        title += f": mixed / separate RL = {c.headline:.1%}"
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def ratios(c: Comparison, path: Path, device: str = "GPU") -> Path | None:
    """Mixed / separate (and MT-OPD / separate) overall and normalised."""
    measures = [("total", None), ("per step", "step"), ("per prompt", "prompt"), ("per gen. token", "token")]
    series = [("mixed / separate RL", c.mixed, ARM_COLORS["mixed"]), ("MT-OPD / separate RL", c.opd, ARM_COLORS["opd"])]
    vals = {lab: [c.ratio(g, c.separate_rl, w) for _, w in measures] for lab, g, _ in series}
    if all(v is None for vs in vals.values() for v in vs):
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width, used = 0.38, set()
    for i, (lab, _, color) in enumerate(series):
        xs = [j + (i - 0.5) * width for j in range(len(measures))]
        for x, v in zip(xs, vals[lab]):
            if v is None:
                ax.text(x, 0.02, "n/a", ha="center", fontsize=8, color="#718096")
                continue
            ax.bar(x, v * 100, width, color=color, label=None if lab in used else lab)
            used.add(lab)
            ax.text(x, v * 100, f"{v:.1%}", ha="center", va="bottom", fontsize=8)
    ax.axhline(100, color="#4a5568", lw=0.8, ls="--")
    ax.set_xticks(range(len(measures)), [m for m, _ in measures])
    ax.set_ylabel("% of separate single-domain RL")
    ax.set_title(f"{device} cost relative to separate RL (100% = same cost)")
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def runs(totals: list, path: Path, device: str = "GPU") -> Path | None:
    """Per run: GPU time (useful vs lost to interruptions), and time queued."""
    ts = sorted(totals, key=lambda t: -t.gpu_s)
    if not ts:
        return None
    shown = len(ts) > MAX_RUNS
    n_all, ts = len(ts), ts[:MAX_RUNS]
    name, div = unit(max(t.gpu_s for t in ts), device)
    labels = [t.run.key for t in ts]
    total = [t.gpu_s for t in ts]
    lost = [min(t.lost_gpu_s, t.gpu_s) for t in ts]
    queued = [(t.queued_s or 0.0) / 3600 for t in ts]
    colors = [ARM_COLORS.get(t.run.arm, "#a0aec0") for t in ts]
    has_q = any(q > 0 for q in queued)
    h = 1.2 + 0.32 * len(labels)
    fig, axes = plt.subplots(1, 2 if has_q else 1, figsize=(11 if has_q else 8.5, h), sharey=True,
                             gridspec_kw={"width_ratios": [3, 1]} if has_q else None, squeeze=False)
    ax = axes[0][0]
    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, [(a - b) / div for a, b in zip(total, lost)], color=colors, label="kept (colour = arm)")
    ax.barh(ys, [b / div for b in lost], left=[(a - b) / div for a, b in zip(total, lost)], color="#e53e3e",
            label="lost to interruptions (since last checkpoint)")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel(name)
    ax.set_title(f"{device} time per run" + (f" (the {MAX_RUNS} largest of {n_all}; all are in the tables)"
                                        if shown else ""))
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    if has_q:
        qa = axes[0][1]
        qa.barh(ys, queued, color="#a0aec0")
        qa.set_xlabel("hours queued")
        qa.set_title("Time in the queue")
        qa.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def cost_vs_accuracy(results: list[EvalResult], path: Path, device: str = "GPU") -> Path | None:
    """Each model's average accuracy over the benchmarks vs the RL cost that produced it,
    coloured by arm; hollow: a model with fewer benchmarks than the others."""
    pts = [r for r in results if r.cost_gpu_s is not None]
    if not pts:
        return None
    n_all = len({b for r in results for b in r.benches})
    name, div = unit(max(r.cost_gpu_s for r in pts) or 1.0, device)
    fig, ax = plt.subplots(figsize=(8, 5))
    stacked: dict[float, int] = {}  # models of one cost (merges of the same runs): labels one under another
    for r in sorted(pts, key=lambda r: -r.avg):
        x, color = r.cost_gpu_s / div, ARM_COLORS.get(r.arm, "#a0aec0")
        ax.scatter(x, r.avg, s=55, zorder=3, edgecolors=color, linewidths=1.5,
                   facecolors=color if len(r.benches) == n_all else "none")
        i = stacked[round(x, 3)] = stacked.get(round(x, 3), -1) + 1
        ax.annotate(r.label, (x, r.avg), textcoords="offset points", xytext=(6, 4 - 10 * i), fontsize=8)
    from matplotlib.lines import Line2D

    arms_seen = list(dict.fromkeys(r.arm for r in pts))
    ax.legend([Line2D([], [], marker="o", ls="", color=ARM_COLORS.get(a, "#a0aec0")) for a in arms_seen], arms_seen,
              fontsize=8, frameon=False, loc="best")
    ax.set_xlabel(f"RL {name} to produce the model")
    ax.set_ylabel(f"average accuracy over {n_all} benchmark(s), %")
    ax.set_title("Average accuracy vs cost" + ("; hollow: fewer benchmarks" if any(
        len(r.benches) < n_all for r in pts) else ""))
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.15)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)
