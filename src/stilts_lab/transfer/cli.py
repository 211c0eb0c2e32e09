"""python -m stilts_lab.transfer estimate SWEEP_DIR | OVERRIDES... [--max-examples N] [--out CSV]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from stilts_lab.errors import StiltsError
from stilts_lab.transfer.estimate import OUT_FILE, cost_lines, estimate, write


def table(df) -> str:
    # the plain encoder has no intermediate seed nor key: "-", not NaN, or pivot_table would drop its
    # rows; the key keeps apart two checkpoints of one name and seed (ablation arms), which it would average
    dash = {c: df[c].astype("string").fillna("-").replace("", "-") for c in ("intermediate_seed", "checkpoint_key")}
    keyed = df.assign(**dash)
    wide = keyed.pivot_table(index=["target", "intermediate", "intermediate_seed", "checkpoint_key"],
                             columns="estimator", values="score").reset_index()
    wide.columns.name = None
    return wide.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def sweep_models(folder: Path) -> list[str]:
    """The model names of the trials plan.from_sweep reads (a recorded config, a target)."""
    from omegaconf import OmegaConf

    from stilts_lab.results import METRICS_FILE, read_metrics
    names = []
    for path in sorted(folder.rglob(METRICS_FILE)):
        metrics = read_metrics(path)
        if isinstance(metrics, dict) and metrics.get("config"):
            cfg = OmegaConf.create(metrics["config"])
            if str(cfg.target.name) != "none":
                names.append(str(cfg.model.name))
    return list(dict.fromkeys(names))


def override_models(overrides: list[str]) -> list[str]:
    """The model names of the trials the overrides expand to, composed as plan.from_overrides does."""
    from hydra import compose, initialize_config_dir

    from stilts_lab.transfer.plan import CONF, expand
    trials = expand(overrides)   # Hydra's own context, closed before ours opens
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return list(dict.fromkeys(str(compose(config_name="config", overrides=trial).model.name)
                                  for trial in trials))


def one_model(models: list[str], what: str) -> str | None:
    """The plan encodes every start with one tokenizer and scores one plain encoder (the first
    trial's model): a sweep over several models is estimated one model at a time."""
    if len(models) > 1:
        raise StiltsError(f"{what}: trials of {len(models)} models ({', '.join(models)}); estimate each model "
                          "on its own (its trials' folder, or the overrides with model=NAME)")
    return models[0] if models else None


def rank_main(args) -> int:
    import time

    from stilts_lab.transfer.rank import rank, ranking_table
    start = time.perf_counter()
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    try:
        df, notes = rank(args.target, candidates, args.overrides, max_examples=args.max_examples,
                         embed_examples=args.embed_examples, with_checkpoints=args.with_checkpoints)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for note in notes:
        print(note, file=sys.stderr)
    if df.empty:
        print("error: no candidate could be ranked", file=sys.stderr)
        return 1
    trained = "each candidate's checkpoint trained or reused" if args.with_checkpoints else "nothing trained"
    print(f"candidates for {args.target}, {trained} (higher: predicted to transfer better):")
    print(ranking_table(df))
    print(f"{time.perf_counter() - start:.1f} s in all")
    if args.out:
        print(f"wrote {write(df, args.out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stilts_lab.transfer",
                                     description="Transferability estimates (LogME, H-score, kNN) per starting encoder and target.")
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="a sweep folder, or the Hydra overrides of a sweep not yet run")
    est.add_argument("what", nargs="+", help="SWEEP_DIR, or overrides such as +experiment=small_grid intermediate=none,cola")
    est.add_argument("--max-examples", type=int, default=1000, help="training examples per target (default 1000)")
    est.add_argument("--batch-size", type=int, default=32)
    est.add_argument("--out", type=Path, help=f"CSV path (default SWEEP_DIR/{OUT_FILE}; required with overrides)")
    rk = sub.add_parser("rank", help="rank candidate intermediate tasks for a target, nothing trained")
    rk.add_argument("--target", required=True, help="the target task, e.g. rte")
    rk.add_argument("--candidates", required=True, help="comma-separated intermediate tasks, e.g. cola,mrpc,hellaswag_p")
    rk.add_argument("--max-examples", type=int, default=1000, help="training examples per task (default 1000)")
    rk.add_argument("--embed-examples", type=int, default=100, help="rows per task for TextEmb (default 100)")
    rk.add_argument("--out", type=Path, help="also write the scores as a transfer_estimates.csv the report reads")
    rk.add_argument("--with-checkpoints", action="store_true",
                    help="also train (or reuse) each candidate's intermediate checkpoint and add LogME, H-score "
                         "and kNN on it (minutes per candidate on a CPU)")
    rk.add_argument("overrides", nargs="*", help="Hydra overrides for every task, e.g. target.train_size=400")
    args = parser.parse_args(argv)
    if args.command == "rank":
        return rank_main(args)
    try:
        from stilts_lab.transfer import plan as plans
        folder = Path(args.what[0])
        if args.max_examples < 2:
            raise StiltsError(f"--max-examples={args.max_examples}: need at least 2 examples")
        if len(args.what) == 1 and "=" not in args.what[0] and folder.is_dir():
            model = one_model(sweep_models(folder), str(folder))
            plan, out = plans.from_sweep(folder), args.out or folder / OUT_FILE
        else:
            if args.out is None:
                raise StiltsError(f"--out CSV is required when estimating from overrides ({' '.join(args.what)})")
            # before from_overrides, which may train intermediate checkpoints
            model = one_model(override_models(list(args.what)), " ".join(args.what))
            plan, out = plans.from_overrides(list(args.what)), args.out
        df = estimate(plan, model=model, max_examples=args.max_examples, batch_size=args.batch_size)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table(df))
    for line in cost_lines(df, plan):
        print(line)
    print(f"wrote {write(df, out)}")
    return 0
