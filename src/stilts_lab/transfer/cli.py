"""python -m stilts_lab.transfer estimate SWEEP_DIR | OVERRIDES... [--max-examples N] [--out CSV]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from stilts_lab.errors import StiltsError
from stilts_lab.transfer.estimate import OUT_FILE, cost_lines, estimate, write


def table(df) -> str:
    # the plain encoder has no intermediate seed: "-", not NaN, or pivot_table would drop its rows
    seeds = df["intermediate_seed"].astype("string").fillna("-").replace("", "-")
    keyed = df.assign(intermediate_seed=seeds)
    wide = keyed.pivot_table(index=["target", "intermediate", "intermediate_seed"], columns="estimator",
                             values="score").reset_index()
    wide.columns.name = None
    return wide.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stilts_lab.transfer",
                                     description="Transferability estimates (LogME, H-score) per starting encoder and target.")
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="a sweep folder, or the Hydra overrides of a sweep not yet run")
    est.add_argument("what", nargs="+", help="SWEEP_DIR, or overrides such as +experiment=small_grid intermediate=none,cola")
    est.add_argument("--max-examples", type=int, default=1000, help="training examples per target (default 1000)")
    est.add_argument("--batch-size", type=int, default=32)
    est.add_argument("--out", type=Path, help=f"CSV path (default SWEEP_DIR/{OUT_FILE}; required with overrides)")
    args = parser.parse_args(argv)
    try:
        from stilts_lab.transfer import plan as plans
        folder = Path(args.what[0])
        if len(args.what) == 1 and "=" not in args.what[0] and folder.is_dir():
            plan, out = plans.from_sweep(folder), args.out or folder / OUT_FILE
        else:
            if args.out is None:
                raise StiltsError(f"--out CSV is required when estimating from overrides ({' '.join(args.what)})")
            plan, out = plans.from_overrides(list(args.what)), args.out
        if args.max_examples < 2:
            raise StiltsError(f"--max-examples={args.max_examples}: need at least 2 examples")
        df = estimate(plan, max_examples=args.max_examples, batch_size=args.batch_size)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table(df))
    for line in cost_lines(df, plan):
        print(line)
    print(f"wrote {write(df, out)}")
    return 0
