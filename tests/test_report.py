"""The report on sweeps whose right answers are known by construction.

Vanilla scores 0.50/0.60/0.70/0.80 and realfake 0.54/0.68/0.82/0.96 on the same four cells
(seed x lr), so the paired differences are 0.04, 0.08, 0.12, 0.16: mean 0.10, with a spread, so
the t-test has a real p-value. Vanilla's 0.50 is under the 0.53 trivial baseline.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from stilts_lab.report import collect_trials, comparison_table, main, write_report
from stilts_lab.report.stats import bootstrap_mean_ci
from stilts_lab.results import write_json_atomic

BASELINE = 0.53
CELLS = [(12, 1e-5), (12, 2e-5), (42, 1e-5), (42, 2e-5)]
VANILLA = [0.50, 0.60, 0.70, 0.80]
REALFAKE = [0.54, 0.68, 0.82, 0.96]


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def write_trial(path: Path, intermediate: str, seed: int, lr: float, best: float | None,
                status: str = "ok", target_size: int | None = None,
                intermediate_size: int | None = None, config: dict | None = None,
                baseline_key: str = "trivial_baseline") -> dict:
    """One metrics.json as pipeline.run writes it; `config` overrides nested config keys."""
    base = {"seed": seed, "model": {"name": "minilm_l6", "lr": 1e-4},
            "intermediate": {"name": intermediate, "train_size": intermediate_size,
                             "format": "realfake" if intermediate.startswith("realfake") else "jsonl"},
            "generator": {"name": "smollm2_135m", "top_p": 0.9},
            "target": {"name": "rte", "kind": "classification", "train_size": target_size, "eval_size": None},
            "optim": {"lr": lr, "warmup_ratio": 0.1}, "data": {"batch_size": 16, "split_seed": 0},
            "trainer": {"max_epochs": 3, "num_threads": None},
            "paths": {"data_dir": "/data", "cache_dir": "/cache"}}
    config = merge(base, config or {})
    hparams = {"lr": lr, "batch_size": 16, "warmup_ratio": 0.1, "max_epochs": 3,
               "train_size": target_size}
    metrics = {
        "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12],
        "model": "minilm_l6", "intermediate": intermediate, "target": "rte", "seed": seed,
        "hparams": hparams, "metric_name": "accuracy",
        "dev_metric_per_epoch": [] if best is None else [best],
        "best_dev_metric": best, "last_dev_metric": best, baseline_key: BASELINE,
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
        # Settings that never change a result (paths, threads) differ, and must not split arms.
        write_trial(root / "vanilla" / str(n), "none", seed, lr, v,
                    config={"paths": {"data_dir": f"/data{n}"}, "trainer": {"num_threads": n}})
        write_trial(root / "2026-01-01" / "12-00" / "realfake" / str(n), "realfake", seed, lr, r)
    write_trial(root / "vanilla" / "9", "realfake", 42, 3e-5, None, status="failed")
    # An older run of vanilla's first cell: same config_hash, a score that would move every statistic.
    stale = root / "rerun" / "0" / "metrics.json"
    write_trial(stale.parent, "none", *CELLS[0], 0.99, config={"paths": {"data_dir": "/data0"},
                                                                 "trainer": {"num_threads": 0}})
    os.utime(stale, (1_000_000, 1_000_000))
    return root


def rows_of(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def test_results_csv_one_row_per_trial(sweeps, tmp_path):
    write_report([sweeps], tmp_path / "out")
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 9  # 4 vanilla + 4 realfake + 1 failed; the stale re-run dropped
    for column in ["config_hash", "model", "intermediate", "target", "seed", "best_dev_metric",
                   "last_dev_metric", "metric_name", "trivial_baseline", "status", "settings",
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


def test_failed_rerun_keeps_the_finished_score(tmp_path):
    """A cell finished (0.71), then a later rerun of the same config failed (e.g. out of memory):
    the report keeps the score, not the newer failure. A cell that only ever failed keeps its newest
    failure; of two finished runs the newer one wins."""
    root = tmp_path / "sweep"
    finished = write_trial(root / "0", "none", 12, 1e-5, 0.71)
    failed = write_trial(root / "1", "none", 12, 1e-5, None, status="failed")
    assert finished["config_hash"] == failed["config_hash"]
    write_trial(root / "2", "none", 42, 1e-5, None, status="failed")
    write_trial(root / "3", "none", 42, 1e-5, None, status="failed")
    write_trial(root / "4", "none", 12, 2e-5, 0.60)
    write_trial(root / "5", "none", 12, 2e-5, 0.65)
    for n, when in enumerate([1_000, 2_000, 1_000, 2_000, 1_000, 2_000]):
        os.utime(root / str(n) / "metrics.json", (when, when))
    df = collect_trials([root])
    assert df.attrs["duplicates_dropped"] == 3
    kept = {Path(p).parent.name: s for p, s in zip(df["path"], df["best_dev_metric"])}
    assert sorted(kept) == ["0", "3", "5"]
    assert kept["0"] == 0.71 and kept["5"] == 0.65 and pd.isna(kept["3"])


def test_summary_has_hand_computed_statistics(sweeps, tmp_path):
    summary = (tmp_path / "out" / "summary.md")
    write_report([sweeps], summary.parent)
    text = summary.read_text()
    # One arm each: data_dir and num_threads differ between vanilla trials, and change no result.
    assert "settings" not in text.split("How to read")[0]
    # sample std of 0.5, 0.6, 0.7, 0.8 = sqrt(0.05 / 3) = 0.1291; diverged trial included.
    assert "| vanilla | 4 | 0 | 1 | 0.6500 | 0.1291 | 0.6500 | 0.5000 | 0.8000 |" in text
    # realfake: deviations from 0.75 are -.21 -.07 .07 .21: sqrt(0.098 / 3) = 0.1807
    assert "| realfake | 4 | 1 | 0 | 0.7500 | 0.1807 | 0.7500 | 0.5400 | 0.9600 |" in text
    # The vanilla row comes first.
    assert text.index("| vanilla |") < text.index("| realfake |")
    assert "dev accuracy" in text and "Trivial baseline (majority class): 0.5300" in text
    assert "Dropped 1 duplicate" in text
    [cells] = [r for r in rows_of(text, "realfake") if r[1].startswith("0.")]
    assert cells[1].startswith("0.1000 [")  # delta mean: 0.75 - 0.65
    # Δ max at equal budgets (n = 4 cells each): Dodge's weights (i/4)^4 - ((i-1)/4)^4 = 1, 15, 65,
    # 175 over 256 on the sorted differences .04 .08 .12 .16: 37.04 / 256 = 0.1447 (the pooled
    # max difference would be 0.16)
    assert cells[2].startswith("0.1447 (n=4) [")
    # cells; the block design's t with one checkpoint per arm is the paired t: deviations
    # -.06 -.02 .02 .06 give sd = sqrt(.008 / 3), t = sqrt(15), two-sided p at 3 df = 0.0305;
    # a family of one: adjusted = raw
    assert cells[3:6] == ["4", "0.0305", "0.0305"]
    assert cells[-1] == "higher (these checkpoints)" and cells[1].endswith("*")


def test_bootstrap_flags_one_trial():
    assert bootstrap_mean_ci(np.array([0.7])).low is None
    # the mean of 0.5, 0.6, 0.7, 0.8 resampled: exact 2.5/97.5 percentiles 0.5500 and 0.7500
    ci = bootstrap_mean_ci(np.array(VANILLA))
    assert ci.low == pytest.approx(0.55, abs=0.01) and ci.high == pytest.approx(0.75, abs=0.01)


def test_report_is_deterministic(sweeps, tmp_path):
    df = collect_trials([sweeps])
    first, second = comparison_table(df), comparison_table(df)
    assert first.loc[0, "delta_max_low"] == second.loc[0, "delta_max_low"]   # the permutations are seeded
    write_report([sweeps], tmp_path / "a")
    write_report([sweeps], tmp_path / "b")
    assert (tmp_path / "a" / "summary.md").read_bytes() == (tmp_path / "b" / "summary.md").read_bytes()


def test_arms_split_by_every_setting_outside_the_grid(sweeps, tmp_path):
    """Vanilla on another dev subset, and real-fake from another generator, are arms of their own:
    never pooled, never paired across dev subsets."""
    for n, ((seed, lr), best) in enumerate(zip(CELLS, [0.30, 0.30, 0.30, 0.30])):
        write_trial(sweeps / "small_dev" / str(n), "none", seed, lr, best, config={"target": {"eval_size": 100}})
        write_trial(sweeps / "small_dev_rf" / str(n), "realfake", seed, lr, best + 0.02 * n,
                    config={"target": {"eval_size": 100}})
    for n, ((seed, lr), best) in enumerate(zip(CELLS, [0.91, 0.92, 0.93, 0.94])):
        write_trial(sweeps / "gpt2" / str(n), "realfake", seed, lr, best,
                    config={"generator": {"name": "gpt2_medium"}})
        # the generator does not concern vanilla: this is the same vanilla arm as the fixture's
    written = write_report([sweeps], tmp_path / "out")
    text = written["summary.md"].read_text()
    arms = {tuple(r[:2]): r for r in rows_of(text, "vanilla") + rows_of(text, "realfake") if r[2].isdigit()}
    assert set(arms) == {("vanilla", "target.eval_size=null"), ("vanilla", "target.eval_size=100"),
                         ("realfake", "generator.name=smollm2_135m, target.eval_size=null"),
                         ("realfake", "generator.name=smollm2_135m, target.eval_size=100"),
                         ("realfake", "generator.name=gpt2_medium, target.eval_size=null")}
    assert arms[("vanilla", "target.eval_size=null")][5] == "0.6500"  # not pooled with the 0.30s
    assert arms[("realfake", "generator.name=gpt2_medium, target.eval_size=null")][5] == "0.9250"
    comp = {tuple(r[:2]): r for r in rows_of(text, "realfake") if r[2].startswith(("0.", "-0.", "n/a"))}
    # each real-fake arm against the vanilla arm on its own dev subset: 0.30 vs 0.30 + 0.02n
    assert comp[("realfake", "generator.name=smollm2_135m, target.eval_size=100")][2].startswith("0.0300 [")
    assert comp[("realfake", "generator.name=smollm2_135m, target.eval_size=null")][2].startswith("0.1000 [")
    assert comp[("realfake", "generator.name=gpt2_medium, target.eval_size=null")][2].startswith("0.2750 [")
    assert all(r[4] == "4" for r in comp.values())  # four pairs each, none across dev subsets
    assert_png(written["violin_rte.png"])


def test_arm_without_matching_vanilla_is_not_compared(tmp_path):
    for n, (seed, lr) in enumerate(CELLS):
        write_trial(tmp_path / "s" / f"v{n}", "none", seed, lr, 0.6, config={"data": {"split_seed": 1}})
        write_trial(tmp_path / "s" / f"r{n}", "realfake", seed, lr, 0.7, config={"data": {"split_seed": 2}})
    text = write_report([tmp_path / "s"], tmp_path / "out")["summary.md"].read_text()
    [row] = [r for r in rows_of(text, "realfake") if r[2].startswith("n/a")]
    assert row[1] == "data.split_seed=2" and row[2] == "n/a (no vanilla arm with these settings)"
    assert row[4] == "0"  # no pairs


def test_other_data_files_are_another_arm(tmp_path):
    """Where metrics.json records the hashes of the files a trial read, other data is another arm."""
    for n, (seed, lr) in enumerate(CELLS):
        for version, best in (("aaaa", 0.6), ("bbbb", 0.8)):
            metrics = write_trial(tmp_path / "s" / f"{version}{n}", "none", seed, lr, best)
            metrics["data_files"] = {"target.train": "1111" * 16, "target.eval": version * 16}
            metrics["config_hash"] += version
            write_json_atomic(tmp_path / "s" / f"{version}{n}" / "metrics.json", metrics)
    text = write_report([tmp_path / "s"], tmp_path / "out")["summary.md"].read_text()
    rows = [r[:3] + [r[5]] for r in rows_of(text, "vanilla")]
    assert rows == [["vanilla", "data_files.target.eval=aaaaaaaaaaaa", "4", "0.6000"],
                    ["vanilla", "data_files.target.eval=bbbbbbbbbbbb", "4", "0.8000"]]


def test_older_baseline_key_is_read(tmp_path):
    for n, (seed, lr) in enumerate(CELLS):
        write_trial(tmp_path / "old" / str(n), "none", seed, lr, 0.5, baseline_key="majority_baseline")
    df = collect_trials([tmp_path / "old"])
    assert (df["trivial_baseline"] == BASELINE).all() and df["at_baseline"].all()


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
    write_trial(tmp_path / "sweep" / "one", "realfake", 12, 1e-5, 0.9, target_size=5000)
    written = write_report([tmp_path / "sweep"], tmp_path / "out", factor="target.train_size")
    assert_png(written["factor_rte_target.train_size.png"])
    text = written["summary.md"].read_text()
    assert "### Factor: target.train_size" in text
    assert "| vanilla | 100 | 2 | 0.5500 | 0.0707 |" in text
    assert "| vanilla | 1000 | 2 | 0.7500 | 0.0707 |" in text
    assert "| realfake | 100 | 2 | 0.7000 | 0.1414 |" in text
    assert "| realfake | 1000 | 2 | 0.9000 | 0.0707 |" in text
    assert "| realfake | 5000 | 1 | 0.9000 | n/a | n/a (needs 2+ trials per arm) |" in text
    # Outside the factor table the sizes are arms, each against vanilla of its own size.
    assert "| realfake | target.train_size=1000 | 0.1500 [" in text


def test_factor_intermediate_train_size_with_vanilla_reference(tmp_path):
    """Vanilla has no intermediate.train_size: it is a reference, not a point on the axis."""
    for n, ((seed, lr), best) in enumerate(zip(CELLS, [0.50, 0.60])):
        # the shared intermediate block sets a size for vanilla too; it does not concern it
        write_trial(tmp_path / "sweep" / f"none-{n}", "none", seed, lr, best, intermediate_size=500)
    for size, values in {2000: [0.60, 0.70], 30000: [0.80, 0.90]}.items():
        for n, ((seed, lr), best) in enumerate(zip(CELLS, values)):
            write_trial(tmp_path / "sweep" / f"rf-{size}-{n}", "realfake", seed, lr, best,
                        intermediate_size=size)
    written = write_report([tmp_path / "sweep"], tmp_path / "out", factor="intermediate.train_size")
    assert_png(written["factor_rte_intermediate.train_size.png"])
    text = written["summary.md"].read_text()
    assert "| vanilla | null | 2 | 0.5500 |" in text
    assert "| realfake | 2000 | 2 | 0.6500 |" in text and "| realfake | 30000 | 2 | 0.8500 |" in text
    # Each size is an arm, paired with vanilla cell by cell: 0.10 and 0.30, never their mean.
    assert "| vanilla | - | 2 |" in text
    assert "| realfake | intermediate.train_size=2000 | 0.1000 [" in text
    assert "| realfake | intermediate.train_size=30000 | 0.3000 [" in text


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
