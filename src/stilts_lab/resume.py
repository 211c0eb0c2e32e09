"""Resuming a sweep: a trial whose metrics.json (anywhere under the sweep dir) has the same config
hash and finished (ok, or diverged: a real result too) is not run again. Matching by config hash,
not by folder name, keeps this right when a sweep is re-run with its trials in another order.

A sweep that outlives its machine (hours across sessions, where only git is kept) carries its finished
trials as a report's results.csv at the top of the sweep dir (CARRIED_FILE): its rows count as finished
too, and the report reads them beside the new trials' metrics.json (report/collect.py)."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from stilts_lab.results import metrics_files, read_metrics

log = logging.getLogger(__name__)
FINISHED = ("ok", "diverged")


def sweep_root(default: Path) -> Path:
    """The sweep dir in a multirun (all sibling trials), else the run's own dir."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return Path(hc.sweep.dir)
    except Exception:  # composed without a Hydra run
        pass
    return default


CARRIED_FILE = "results.csv"


def carried_trial(config_hash: str, root: Path) -> tuple[Path, dict] | None:
    """(the carried results.csv, {config_hash, status, best_dev_metric}) of a finished trial it holds."""
    path = Path(root) / CARRIED_FILE
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("config_hash") == config_hash and row.get("status") in FINISHED:
                score = row.get("best_dev_metric")
                return path, {"config_hash": config_hash, "status": row["status"],
                              "best_dev_metric": float(score) if score else None}
    return None


def finished_trial(config_hash: str, root: Path, max_depth: int = 3) -> tuple[Path, dict] | None:
    root = Path(root)
    if not root.is_dir():
        return None
    for path in metrics_files(root, max_depth):
        metrics = read_metrics(path)
        if not isinstance(metrics, dict):  # a kill mid-write cannot do this; a copy can
            log.warning("%s is unreadable: its trial counts as not done and runs again", path)
        if metrics and metrics.get("config_hash") == config_hash and metrics.get("status") in FINISHED:
            return path, metrics
    return carried_trial(config_hash, root)
