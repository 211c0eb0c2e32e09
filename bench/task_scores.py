"""Vanilla dev score of every task after one short target run, next to its trivial baseline.

    python bench/task_scores.py                          # every task, 500 train / 500 eval, 1 epoch
    python bench/task_scores.py --tasks cola stsb --train-size 1000 --epochs 3

Each task runs through stilts_lab.pipeline.run with the model's default lr and batch size (the
config's defaults; only the sizes and epochs below are overridden) and writes its metrics.json under
--out. Prints the markdown table that docs/tasks.md holds. Timings depend on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
ALL_TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml") if p.stem not in ("none", "realfake"))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def run_task(task: str, args) -> dict:
    from stilts_lab.pipeline import run
    # a size past a task's own is all of it; the table reports the sizes metrics.json records
    overrides = [f"target={task}", f"target.train_size={args.train_size}", f"target.eval_size={args.eval_size}",
                 f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
                 f"+output_dir={Path(args.out) / task}"]
    return run(compose(overrides))


def table(rows: list[dict]) -> str:
    lines = ["| task | kind | train | eval | epochs | seconds | dev metric | vanilla | baseline | other dev metrics | split |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for m in rows:
        main = m["metric_name"]
        others = ", ".join(f"{k} {v:.3f}" for k, v in m["dev_metrics_per_epoch"][-1].items() if k != main)
        kind = m["config"]["target"]["kind"]
        if kind == "multiple_choice":  # options are shuffled, so the most frequent train position is ~chance
            baseline = "top position"
        else:
            baseline = "constant" if main in ("mcc", "pearson", "spearman") else "majority class"
        lines.append(
            f"| `{m['target']}` | {kind} | {m['split']['train_examples']} | {m['split']['eval_examples']} | "
            f"{m['hparams']['max_epochs']} | {m['fit_seconds']:.0f} | {main} | {m['last_dev_metric']:.3f} | "
            f"{m['trivial_baseline']:.3f} ({baseline}) | {others or '-'} | "
            f"{'carved from dev' if m['split']['carved'] else 'official'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=ALL_TASKS, choices=ALL_TASKS)
    p.add_argument("--train-size", type=int, default=500)
    p.add_argument("--eval-size", type=int, default=500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's). On a machine other jobs load, 1 can beat 2.")
    p.add_argument("--out", default=str(REPO / "outputs" / "task_scores"))
    args = p.parse_args()
    if not os.environ.get("STILTS_DATA_DIR"):
        sys.exit("set STILTS_DATA_DIR to the data root (../shared/data): the table is on the local files")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for task in args.tasks:
        m = run_task(task, args)
        print(f"{task}: {m['metric_name']} {m['last_dev_metric']:.3f} (baseline {m['trivial_baseline']:.3f}), "
              f"{m['fit_seconds']:.0f} s", file=sys.stderr, flush=True)
        rows.append(m)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "table.md").write_text(table(rows) + "\n")
    print(f"\nMiniLM-L6 vanilla, lr {rows[0]['hparams']['lr']}, batch {rows[0]['hparams']['batch_size']}, "
          f"torch threads {torch.get_num_threads()}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
