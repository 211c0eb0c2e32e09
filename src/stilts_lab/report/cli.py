"""The command line: python -m stilts_lab.report DIR [DIR ...] [--out DIR] [--factor KEY] [--contrast A:B ...]."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from stilts_lab.errors import StiltsError
from stilts_lab.report.write import write_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stilts_lab.report",
                                     description="Report over finished sweeps: results.csv, summary.md, "
                                                 "violin plots, factor plots.")
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep directories, searched recursively")
    parser.add_argument("--out", type=Path, help="output directory (default: FIRST_DIR/report)")
    parser.add_argument("--factor", help="config key to plot against, e.g. intermediate.train_size")
    parser.add_argument("--contrast", action="append", default=[], metavar="A:B",
                        help="intermediate arm A against arm B, paired over the grid cells both filled, "
                             "e.g. realfake_swapped:realfake (repeatable; 'vanilla' names no intermediate stage)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.dirs, args.out, args.factor, args.contrast)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in written.values():
        print(f"wrote {path}")
    return 0
