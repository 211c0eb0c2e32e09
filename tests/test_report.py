"""The report on sweeps whose right answers are known by construction.

Vanilla scores 0.50/0.60/0.70/0.80 and realfake 0.60/0.70/0.80/0.90 on the same four cells
(seed x lr), so every paired difference is 0.1; vanilla's 0.50 is under the 0.53 majority baseline.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from stilts_lab.report import collect_trials, comparison_table, main, write_report
from stilts_lab.results import write_json_atomic

BASELINE = 0.53
CELLS = [(12, 1e-5), (12, 2e-5), (42, 1e-5), (42, 2e-5)]
VANILLA = [0.50, 0.60, 0.70, 0.80]
REALFAKE = [0.60, 0.70, 0.80, 0.90]


def write_trial(path: Path, intermediate: str, seed: int, lr: float, best: float | None,
                status: str = "ok", target_size: int | None = None,
                intermediate_size: int | None = None) -> dict:
    config = {"seed": seed, "model": {"name": "minilm_l6"},
              "intermediate": {"name": intermediate, "train_size": intermediate_size},
              "target": {"name": "rte", "train_size": target_size},
              "optim": {"lr": lr, "warmup_ratio": 0.1}, "data": {"batch_size": 16}}
    hparams = {"lr": lr, "batch_size": 16, "warmup_ratio": 0.1, "max_epochs": 3,
               "train_size": target_size}
    metrics = {
        "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12],
        "model": "minilm_l6", "intermediate": intermediate, "target": "rte", "seed": seed,
        "hparams": hparams, "metric_name": "accuracy",
        "dev_metric_per_epoch": [] if best is None else [best],
        "best_dev_metric": best, "last_dev_metric": best, "trivial_baseline": BASELINE,
        "train_seconds": 1.0, "examples_per_second": 100.0, "status": status,
        "error": "CUDA out of memory" if status == "failed" else None, "config": config}
    write_json_atomic(path / "metrics.json", metrics)
    return metrics


@pytest.fixture
def sweeps(tmp_path: Path) -> Path:
    """Two Hydra-like sweep dirs, nested at different depths, plus a stale re-run."""
    root = tmp_path / "multirun"
    for n, ((seed, lr), v, r) in enumerate(zip(CELLS, VANILLA, REALFAKE)):
        # status "ok" even under the baseline: the report must flag it from the score alone.
        write_trial(root / "vanilla" / str(n), "none", seed, lr, v)
        write_trial(root / "2026-01-01" / "12-00" / "realfake" / str(n), "realfake", seed, lr, r)
    write_trial(root / "vanilla" / "9", "realfake", 42, 3e-5, None, status="failed")
    # An older run of vanilla's first cell: same config_hash, a score that would move every statistic.
    stale = root / "rerun" / "0" / "metrics.json"
    write_trial(stale.parent, "none", *CELLS[0], 0.99)
    os.utime(stale, (1_000_000, 1_000_000))
    return root


def test_results_csv_one_row_per_trial(sweeps, tmp_path):
    write_report([sweeps], tmp_path / "out")
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 9  # 4 vanilla + 4 realfake + 1 failed; the stale re-run dropped
    for column in ["config_hash", "model", "intermediate", "target", "seed", "best_dev_metric",
                   "last_dev_metric", "metric_name", "trivial_baseline", "status",
                   "train_seconds", "examples_per_second", "path", "config.optim.lr",
                   "config.data.batch_size", "config.intermediate.name", "config.target.train_size"]:
        assert column in df.columns, column
    assert df["config_hash"].is_unique
    assert 0.99 not in set(df["best_dev_metric"])
    assert sorted(df.loc[df["intermediate"] == "none", "best_dev_metric"]) == VANILLA
    assert df.loc[df["status"] == "failed", "best_dev_metric"].isna().all()
    assert df["path"].str.endswith("metrics.json").all()


def test_duplicates_keep_newest(sweeps):
    df = collect_trials([sweeps])
    assert df.attrs["duplicates_dropped"] == 1
    assert "rerun" not in " ".join(df["path"])


def test_summary_has_hand_computed_statistics(sweeps, tmp_path):
    summary = (tmp_path / "out" / "summary.md")
    write_report([sweeps], summary.parent)
    text = summary.read_text()
    # sample std of 0.5, 0.6, 0.7, 0.8 = sqrt(0.05 / 3) = 0.1291; diverged trial included.
    assert "| vanilla | 4 | 0 | 1 | 0.6500 | 0.1291 | 0.6500 | 0.5000 | 0.8000 |" in text
    assert "| realfake | 4 | 1 | 0 | 0.7500 | 0.1291 | 0.7500 | 0.6000 | 0.9000 |" in text
    # The vanilla row comes first.
    assert text.index("| vanilla |") < text.index("| realfake |")
    assert "dev accuracy" in text and "Majority-class baseline: 0.5300" in text
    assert "Dropped 1 duplicate" in text
    row = next(line for line in text.splitlines() if line.startswith("| realfake | 0.1000 ["))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("0.1000 [")  # delta mean
    assert cells[2].startswith("0.1000 [")  # delta max
    assert cells[3:6] == ["4", "0.1000", "0.1250"]  # pairs, mean paired diff, exact Wilcoxon p
    assert cells[6] == "n/a (differences have no spread)"  # the t statistic would be infinite


def test_bootstrap_contains_truth_and_is_deterministic(sweeps, tmp_path):
    df = collect_trials([sweeps])
    first, second = comparison_table(df), comparison_table(df)
    for name in ["delta_mean_ci", "delta_max_ci"]:
        lo, hi = first.loc[0, name]
        assert lo < 0.1 < hi and lo < hi
        assert first.loc[0, name] == second.loc[0, name]
    write_report([sweeps], tmp_path / "a")
    write_report([sweeps], tmp_path / "b")
    assert (tmp_path / "a" / "summary.md").read_bytes() == (tmp_path / "b" / "summary.md").read_bytes()


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 400 and width > 400


def test_violin_png(sweeps, tmp_path):
    written = write_report([sweeps], tmp_path / "out")
    assert_png(written["violin_rte.png"])


def test_default_out_is_first_dir_report(sweeps):
    written = write_report([sweeps])
    assert written["summary.md"] == sweeps / "report" / "summary.md"
    # The report folder holds no metrics.json, so a second run sees the same trials.
    assert len(collect_trials([sweeps])) == 9


def test_factor_target_train_size(tmp_path):
    scores = {("none", 100): [0.50, 0.60], ("none", 1000): [0.70, 0.80],
              ("realfake", 100): [0.60, 0.80], ("realfake", 1000): [0.85, 0.95]}
    for (name, size), values in scores.items():
        for n, ((seed, lr), best) in enumerate(zip(CELLS, values)):
            write_trial(tmp_path / "sweep" / f"{name}-{size}-{n}", name, seed, lr, best,
                        target_size=size)
    written = write_report([tmp_path / "sweep"], tmp_path / "out", factor="target.train_size")
    assert_png(written["factor_rte_target.train_size.png"])
    text = written["summary.md"].read_text()
    assert "### Factor: target.train_size" in text
    assert "| vanilla | 100 | 2 | 0.5500 | 0.0707 |" in text
    assert "| vanilla | 1000 | 2 | 0.7500 | 0.0707 |" in text
    assert "| realfake | 100 | 2 | 0.7000 | 0.1414 |" in text
    assert "| realfake | 1000 | 2 | 0.9000 | 0.0707 |" in text


def test_factor_intermediate_train_size_with_vanilla_reference(tmp_path):
    """Vanilla has no intermediate.train_size: it is a reference, not a point on the axis."""
    for n, ((seed, lr), best) in enumerate(zip(CELLS, [0.50, 0.60])):
        write_trial(tmp_path / "sweep" / f"none-{n}", "none", seed, lr, best)
    for size, values in {2000: [0.60, 0.70], 30000: [0.80, 0.90]}.items():
        for n, ((seed, lr), best) in enumerate(zip(CELLS, values)):
            write_trial(tmp_path / "sweep" / f"rf-{size}-{n}", "realfake", seed, lr, best,
                        intermediate_size=size)
    written = write_report([tmp_path / "sweep"], tmp_path / "out", factor="intermediate.train_size")
    assert_png(written["factor_rte_intermediate.train_size.png"])
    text = written["summary.md"].read_text()
    assert "| vanilla | null | 2 | 0.5500 |" in text
    assert "| realfake | 2000 | 2 | 0.6500 |" in text and "| realfake | 30000 | 2 | 0.8500 |" in text
    # Two realfake trials per (seed, lr) cell: each cell pairs once, with their mean.
    assert "| realfake | 0.2000 [" in text


def test_unknown_factor_is_a_clear_error(sweeps, tmp_path, capsys):
    assert main([str(sweeps), "--out", str(tmp_path / "out"), "--factor", "optim.nope"]) == 1
    assert "--factor optim.nope: no such config key" in capsys.readouterr().err


def test_cli(sweeps, tmp_path):
    run = subprocess.run([sys.executable, "-m", "stilts_lab.report", str(sweeps),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"wrote {tmp_path / 'out' / 'summary.md'}" in run.stdout
    assert "dropped 1 duplicate" in run.stdout


def test_no_trials_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == (
        f"error: no metrics.json found under {tmp_path / 'empty'}, {tmp_path / 'missing'}\n")
