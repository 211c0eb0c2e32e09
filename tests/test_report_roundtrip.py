"""The report reads what it wrote: a folder holding only a report's results.csv (docs/verdict_matrix
commits no metrics.json) is read back into the trials the metrics.json files gave."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from stilts_lab.errors import StiltsError
from stilts_lab.report import collect_trials, write_report

REPO = Path(__file__).resolve().parents[1]
VERDICT = REPO / "docs" / "verdict_matrix"
CELLS = [(12, 1e-5), (12, 2e-5), (42, 1e-5), (42, 2e-5)]  # (seed, lr): the grid's cells
BASELINE = 0.53
# Hash prefixes as metrics.json records them: one reads as a float and one as an integer if
# pandas guesses types, and these split realfake into two arms, so the arm keys carry them.
HASHES = {500: "1234e5678901", None: "0123456789ab"}


def write_trial(folder: Path, intermediate: str, seed: int, lr: float, best: float | None,
                status: str = "ok", intermediate_extra: dict | None = None) -> None:
    """One metrics.json with what the report reads of pipeline.run's (tests/test_report.py has the
    full one; a copy keeps these tests apart from that module's churn). Lists, None, an int column
    with gaps and hash prefixes: the values results.csv must give back as they were."""
    config = {"seed": seed, "model": {"name": "minilm_l6", "lr": 1e-4},
              "intermediate": {"name": intermediate, "train_size": None,
                               "format": "realfake" if intermediate.startswith("realfake") else "jsonl",
                               **(intermediate_extra or {})},
              "target": {"name": "rte", "train_size": None, "fields": ["sentence1", "sentence2"]},
              "optim": {"lr": lr, "warmup_ratio": 0.1}, "data": {"batch_size": 16, "split_seed": 0}}
    data_files = {"target.train": "41e3a9b06343"}
    if intermediate == "realfake":
        data_files["intermediate.sources.0"] = HASHES[config["intermediate"]["train_size"]]
    metrics = {"config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12],
               "model": "minilm_l6", "intermediate": intermediate, "target": "rte", "seed": seed,
               "hparams": {"lr": lr, "batch_size": 16, "train_size": None}, "metric_name": "accuracy",
               "best_dev_metric": best, "last_dev_metric": best, "trivial_baseline": BASELINE,
               "train_seconds": 1.0, "status": status, "config": config, "data_files": data_files}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """vanilla, hellaswag and realfake at two train sizes (two arms: other data files too), each
    intermediate arm from intermediate seeds 42 and 43, list-valued settings, one failed trial
    and one at the trivial baseline."""
    root = tmp_path / "sweep"
    for n, (seed, lr) in enumerate(CELLS):
        write_trial(root / "none" / str(n), "none", seed, lr, 0.50 + 0.05 * n)
        for iseed in (42, 43):
            write_trial(root / "hellaswag" / str(iseed) / str(n), "hellaswag", seed, lr, 0.56 + 0.04 * n,
                        intermediate_extra={"seed": iseed, "fields": ["ctx"]})
            for size in HASHES:
                write_trial(root / f"realfake_{size}" / str(iseed) / str(n), "realfake", seed, lr,
                            0.52 + 0.06 * n + (0.01 if size else 0.0),
                            intermediate_extra={"seed": iseed, "train_size": size, "sources": ["a.json", "b.raw"]})
    write_trial(root / "none" / "failed", "none", 42, 3e-5, None, status="failed")
    return root


COMPARED = ["path", "arm", "vanilla_arm", "cell", "settings", "intermediate_seed", "best_dev_metric",
            "trivial_baseline", "scored", "at_baseline", "status", "config_hash"]


def _summary_without_source(path: Path) -> list[str]:
    # The one line naming the folders read differs: the sweep, then the report's output.
    return [line for line in path.read_text().splitlines() if " trials from " not in line]


def test_a_report_of_a_report_is_the_same_report(sweep, tmp_path):
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    write_report([sweep], out1)
    write_report([out1], out2)
    original, read_back = collect_trials([sweep]), collect_trials([out1])

    assert len(original) == 4 + 1 + 4 * 2 + 4 * 2 * 2
    assert original["arm"].nunique() == 4  # vanilla, hellaswag, realfake x 2 train sizes
    assert original["at_baseline"].any() and not original["scored"].all()
    pd.testing.assert_frame_equal(read_back[COMPARED], original[COMPARED])
    assert read_back.attrs == {"duplicates_dropped": 0, "unreadable": 0}
    assert list(read_back.columns) == list(original.columns)
    assert _summary_without_source(out2 / "summary.md") == _summary_without_source(out1 / "summary.md")
    # A fixed point: the CSV written from the CSV is the CSV it was read from.
    assert (out2 / "results.csv").read_bytes() == (out1 / "results.csv").read_bytes()


def test_a_report_into_the_folder_it_reads_overwrites_its_csv_with_the_same(sweep, tmp_path):
    out = tmp_path / "out"
    write_report([sweep], out)
    before = (out / "results.csv").read_bytes()
    write_report([out], out)
    assert (out / "results.csv").read_bytes() == before


def test_older_csv_columns_are_recomputed_not_trusted(sweep, tmp_path):
    """An older results.csv: `diverged` for at_baseline, and derived columns that are wrong."""
    out, old = tmp_path / "out", tmp_path / "old"
    write_report([sweep], out)
    table = pd.read_csv(out / "results.csv")
    old.mkdir()
    table.drop(columns="at_baseline").assign(diverged=False, settings="bogus", intermediate_seed=7,
                                             scored=True).to_csv(old / "results.csv", index=False)
    original, read_back = collect_trials([sweep]), collect_trials([old])
    pd.testing.assert_frame_equal(read_back[COMPARED], original[COMPARED])
    assert "diverged" not in read_back.columns


def test_the_committed_verdict_matrix_is_read_back():
    df = collect_trials([VERDICT])
    assert len(df) == 198
    assert df.attrs == {"duplicates_dropped": 0, "unreadable": 0}
    arms = {"vanilla": "none", "hellaswag_p": "hellaswag_p", "realfake": "realfake", "realfake_p": "realfake_p",
            "realfake_paper": "realfake_paper", "realfake_swapped": "realfake_swapped"}
    for target, section in df.groupby("target"):
        assert section["arm"].nunique() == 6, target
        assert set(section["intermediate"]) == set(arms.values()), target
        for name, arm in section.groupby("intermediate"):
            assert arm["cell"].nunique() == 6, (target, name)
            seeds = set(arm["intermediate_seed"])
            if name == "none":
                assert arm["intermediate_seed"].isna().all()
            else:
                assert seeds == {"42", "43"}, (target, name)
    # The cells are the grid's values as written, not pandas' widened floats.
    assert "('12', '2.5e-05', '0.1', '16')" in set(df["cell"])


def test_a_csv_without_the_required_columns_is_one_error(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    pd.read_csv(VERDICT / "results.csv").drop(columns=["best_dev_metric", "status"]).to_csv(
        folder / "results.csv", index=False)
    with pytest.raises(StiltsError, match=r"broken/results\.csv: missing column\(s\) best_dev_metric, status"):
        collect_trials([folder])
