"""From Python (a notebook, a script): one trial, and a sweep's results as a DataFrame.

    import stilts_lab
    metrics = stilts_lab.run(["+experiment=vanilla_rte", "target.train_size=200"], output_dir="runs/a")
    results = stilts_lab.load_results("multirun/verdict_matrix")   # or a report's results.csv folder
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def run(overrides: Sequence[str] = (), *, output_dir: str | Path | None = None) -> dict:
    """Compose the config `python -m stilts_lab <overrides>` would, run that one trial, and return its
    metrics.json as a dict (also written into output_dir, default: a new folder under outputs/)."""
    import time

    from stilts_lab.compose import compose_config
    from stilts_lab.pipeline import run as run_trial
    out = Path(output_dir) if output_dir is not None else Path("outputs") / "api" / time.strftime("%Y-%m-%d_%H-%M-%S")
    return run_trial(compose_config(list(overrides), output_dir=out.resolve()))


def load_results(*dirs: str | Path):
    """Every trial under the folders (each metrics.json, or a report's results.csv), one row each, with
    the report's columns: scores, settings, arm, cell, intermediate seed (report.collect_trials)."""
    from stilts_lab.report.collect import collect_trials
    return collect_trials([Path(d) for d in dirs])
