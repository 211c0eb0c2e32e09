"""Collecting trials: every metrics.json under the given folders is one row, with its flattened
config, whether it has a score, whether it diverged, and the arm it belongs to (arms.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from stilts_lab.report.arms import DATA_FILES, assign_arms
from stilts_lab.results import METRICS_FILE, read_metrics

SCORE = "best_dev_metric"
# Top-level metrics.json fields copied into results.csv, in this order.
TRIAL_FIELDS = ["config_hash", "model", "intermediate", "target", "seed", "best_dev_metric",
                "last_dev_metric", "metric_name", "trivial_baseline", "status", "train_seconds",
                "fit_seconds", "examples_per_second"]


def collect_trials(dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per trial found under `dirs`. Re-runs (same config_hash) keep the newest finished
    file (scored: a score and not failed), the newest file only where none finished;
    df.attrs records "duplicates_dropped" and "unreadable" (files read_metrics could not parse).
    Columns: TRIAL_FIELDS, path, hparams.*, data_files.* (if recorded), config.* (flattened), the derived booleans scored (has
    a score, not failed) and diverged, and the arm columns of arms.assign_arms."""
    paths = sorted({p for d in dirs for p in Path(d).rglob(METRICS_FILE) if p.is_file()})
    rows, configs, unreadable = [], [], 0
    for path in paths:
        metrics = read_metrics(path)  # maps older names of trivial_baseline
        if metrics is None:
            unreadable += 1
            continue
        row = {field: metrics.get(field) for field in TRIAL_FIELDS}
        row["path"] = str(path)
        row["_mtime"] = path.stat().st_mtime
        row.update({f"hparams.{k}": v for k, v in (metrics.get("hparams") or {}).items()})
        # The data a trial read, where metrics.json records it (sha256 per file; a prefix is enough
        # to tell two versions apart): another file is another arm, whatever the paths say.
        row.update({f"{DATA_FILES}.{k}": str(v)[:12] for k, v in (metrics.get(DATA_FILES) or {}).items()})
        rows.append(row)
        configs.append(metrics.get("config") or {})
    if not rows:
        empty = pd.DataFrame(columns=TRIAL_FIELDS + ["path"])
        empty.attrs.update(duplicates_dropped=0, unreadable=unreadable)
        return empty

    config = pd.json_normalize(configs, sep=".").add_prefix("config.")
    df = pd.concat([pd.DataFrame(rows), config], axis=1)

    # A re-run of a config keeps the newest finished (scored) metrics.json: a failed newer attempt
    # must not drop a valid score. Only where none finished is the newest failure kept. Finished
    # last, then oldest first, so keep="last" picks that one.
    df["scored"] = df[SCORE].notna() & (df["status"] != "failed")
    df = df.sort_values(["scored", "_mtime"], kind="stable")
    rerun = df["config_hash"].notna() & df.duplicated("config_hash", keep="last")
    df = df[~rerun].drop(columns="_mtime").sort_values("path").reset_index(drop=True)

    at_or_below_baseline = df[SCORE].notna() & df["trivial_baseline"].notna() & (
        df[SCORE].astype(float) <= df["trivial_baseline"].astype(float))
    df["diverged"] = df["scored"] & ((df["status"] == "diverged") | at_or_below_baseline)
    df = assign_arms(df)
    df.attrs.update(duplicates_dropped=int(rerun.sum()), unreadable=unreadable)
    return df


def sections(df: pd.DataFrame):
    """(model, target) groups: arms are only compared within the same encoder and target."""
    for (model, target), section in df.groupby(["model", "target"], sort=True, dropna=False):
        yield model, target, section


def metric_names(section: pd.DataFrame) -> str:
    return ", ".join(sorted(set(section["metric_name"].dropna())))
