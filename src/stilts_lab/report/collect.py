"""Collecting trials: every metrics.json under the given folders is one row, with its flattened
config, whether it has a score, whether it stayed at the trivial baseline, and the arm it belongs to (arms.py).
A folder with a results.csv at its top (a report's own output, e.g. docs/verdict_matrix, where only the
CSV is committed; or a sweep's trials carried across machines, resume.CARRIED_FILE) is read back from
that CSV, beside any metrics.json under it."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

import pandas as pd

from stilts_lab.errors import StiltsError
from stilts_lab.report.arms import DATA_FILES, assign_arms
from stilts_lab.results import METRICS_FILE, read_metrics

SCORE = "best_dev_metric"
# Top-level metrics.json fields copied into results.csv, in this order.
TRIAL_FIELDS = ["config_hash", "model", "intermediate", "target", "seed", "best_dev_metric",
                "last_dev_metric", "metric_name", "trivial_baseline", "status", "train_seconds",
                "fit_seconds", "examples_per_second"]
RESULTS_FILE = "results.csv"
# What the derived columns (scored, at_baseline) and the arms need; older results.csv files may
# lack later TRIAL_FIELDS (fit_seconds), which stay empty as a metrics.json without them does.
REQUIRED = ["model", "intermediate", "target", SCORE, "metric_name", "trivial_baseline", "status"]
# Kept as text: names, and hash prefixes that may happen to look like numbers ("1234e5678901").
TEXT_FIELDS = {"config_hash", "model", "intermediate", "target", "metric_name", "status", "path"}


def _text(cell) -> str | None:
    return cell if isinstance(cell, str) else None  # an empty cell read as NaN


def _csv_value(text):
    """One results.csv cell as metrics.json held it. to_csv wrote str(value), so literal_eval
    reads numbers, booleans and lists back ("['a', 'b']" must label as the list did); anything
    else (a tuple from "2.5e-5,1e-4", a quoted string) was a string all along."""
    if not isinstance(text, str):
        return None  # an empty cell: None (or NaN) in the original
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return float(text) if text in ("inf", "-inf") else text
    return value if isinstance(value, (bool, int, float, list, dict)) else text


def _read_results(path: Path) -> tuple[list[dict], list[dict]]:
    """(rows, configs) as collect_trials builds them from metrics.json files. Only the recorded
    columns are kept: the CSV's derived ones (scored, at_baseline or the older diverged, settings,
    intermediate_seed) are recomputed as for any trial, never trusted."""
    try:
        # Everything as text first: pandas' own guesses would turn hash prefixes into numbers.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise StiltsError(f"{path}: not a readable {RESULTS_FILE} ({e})") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise StiltsError(f"{path}: missing column(s) {', '.join(missing)}; expected a {RESULTS_FILE} "
                          f"written by the report (with {', '.join(REQUIRED)})")
    mtime = path.stat().st_mtime
    rows, configs = [], []
    for record in frame.to_dict("records"):
        row = {f: (_text if f in TEXT_FIELDS else _csv_value)(record.get(f)) for f in TRIAL_FIELDS}
        row["path"] = _text(record.get("path")) or str(path)
        row["_mtime"] = mtime
        row.update({c: _csv_value(record[c]) for c in frame.columns if c.startswith("hparams.")})
        row.update({c: _text(record[c]) for c in frame.columns if c.startswith(f"{DATA_FILES}.")})
        rows.append(row)
        configs.append({c.removeprefix("config."): _csv_value(record[c])
                        for c in frame.columns if c.startswith("config.")})
    return rows, configs


def collect_trials(dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per trial found under `dirs`. Re-runs (same config_hash) keep the newest finished
    file (scored: a score and not failed), the newest file only where none finished;
    df.attrs records "duplicates_dropped" and "unreadable" (files read_metrics could not parse).
    Columns: TRIAL_FIELDS, path, hparams.*, data_files.* (if recorded), config.* (flattened), the derived booleans scored (has
    a score, not failed) and at_baseline (never above the trivial baseline, or a non-finite
    loss: metrics.json's status "diverged"), and the arm columns of arms.assign_arms.
    A folder holding a results.csv at its top (a committed report, or a sweep's carried trials)
    contributes that CSV's rows too."""
    paths, rows, configs, unreadable = set(), [], [], 0
    for d in map(Path, dirs):
        found = {p for p in d.rglob(METRICS_FILE) if p.is_file()}
        # a committed report, or a sweep's trials carried over from another machine (resume.CARRIED_FILE)
        # beside the ones run since: a trial in both is kept once (config_hash, below)
        if (d / RESULTS_FILE).is_file():
            # Read whole before anything is written: a report into this folder overwrites it.
            more_rows, more_configs = _read_results(d / RESULTS_FILE)
            rows += more_rows
            configs += more_configs
        paths |= found
    paths = sorted(paths)
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
    # "at baseline", not "diverged": almost always the trial learned nothing (its best dev score never
    # rose above a constant prediction); a loss blow-up is the rare case. metrics.json keeps its status
    # "diverged" so old sweeps still resume; only the report names it for what it is.
    df["at_baseline"] = df["scored"] & ((df["status"] == "diverged") | at_or_below_baseline)
    df = assign_arms(df)
    df.attrs.update(duplicates_dropped=int(rerun.sum()), unreadable=unreadable)
    return df


def sections(df: pd.DataFrame):
    """(model, target) groups: arms are only compared within the same encoder and target."""
    for (model, target), section in df.groupby(["model", "target"], sort=True, dropna=False):
        yield model, target, section


def metric_names(section: pd.DataFrame) -> str:
    return ", ".join(sorted(set(section["metric_name"].dropna())))
