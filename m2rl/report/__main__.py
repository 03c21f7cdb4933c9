"""`python -m m2rl.report <experiment dir> [--out DIR] [--no-sacct | --sacct-file FILE]`.

Exit status: 0 report written (skipped input files are listed on stderr and in the
report), 2 no experiment / nothing to report, 3 Slurm accounting unreachable or unreadable.
"""
from __future__ import annotations

import argparse
import sys

from m2rl.ledger import NoExperiment, SacctParseError, SacctUnavailable


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m m2rl.report", description=(
        "GPU-hour ledger and mix-or-merge report of one experiment (<paths.root>/<experiment.name>)."))
    ap.add_argument("experiment_dir")
    ap.add_argument("--out", help="output directory (default: <experiment dir>/report)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--no-sacct", action="store_true",
                     help="do not ask Slurm accounting; count every attempt from its job-side record")
    src.add_argument("--sacct-file", help="read captured `sacct -D -X -P` output (e.g. a report's sacct.psv) "
                                          "instead of calling sacct")
    args = ap.parse_args(argv)
    source = "off" if args.no_sacct else (args.sacct_file or "auto")

    from m2rl.report import fmt_h, generate

    try:
        rep = generate(args.experiment_dir, args.out, source)
    except NoExperiment as err:
        print(f"m2rl.report: {err}", file=sys.stderr)
        return 2
    except (SacctUnavailable, SacctParseError) as err:
        print(f"m2rl.report: Slurm accounting is needed for this experiment's Slurm jobs and failed: {err}\n"
              "  fix: run where sacct reaches slurmdbd (`sacct -D -j <id>` must answer), pass "
              "--sacct-file <captured sacct -D -X -P output>, or --no-sacct to count from job-side records only "
              "(the report then says so)", file=sys.stderr)
        return 3
    for p in rep.problems:
        print(f"m2rl.report: skipped {p}", file=sys.stderr)
    s = rep.summary
    ratio = s["ratios"]["mixed_over_separate_rl"]
    print(f"{s['experiment']}: {len(s['runs'])} runs, {fmt_h(s['gpu_s'])} {s['unit']} hours ({s['gpu_s']:,.0f} {s['unit']}-s)"
          + (f"; mixed / separate RL = {ratio:.1%}" if ratio is not None else ""))
    if rep.notes:
        print(f"{rep.notes} disagreement(s)/gap(s) between Slurm and job-side records: see the report")
    for key in ("md", "html"):
        print(f"wrote {rep.files[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
