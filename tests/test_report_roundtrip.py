"""The report reads what it wrote: a folder holding only a report's results.csv (docs/verdict_matrix
commits no metrics.json) is read back into the trials the metrics.json files gave."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stilts_lab.errors import StiltsError
from stilts_lab.report import collect_trials, write_report
from tests.test_report import CELLS, write_trial

REPO = Path(__file__).resolve().parents[1]
VERDICT = REPO / "docs" / "verdict_matrix"
# Hash prefixes as metrics.json records them: one reads as a float and one as an integer if
# pandas guesses types, and these split realfake into two arms, so the arm keys carry them.
HASHES = {500: "1234e5678901", None: "0123456789ab"}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """vanilla, hellaswag and realfake at two train sizes (two arms: other data files too), each
    intermediate arm from intermediate seeds 42 and 43, list-valued settings, one failed trial
    and one at the trivial baseline."""
    root = tmp_path / "sweep"
    for n, (seed, lr) in enumerate(CELLS):
        write_trial(root / "none" / str(n), "none", seed, lr, 0.50 + 0.05 * n,
                    config={"target": {"fields": ["sentence1", "sentence2"]}})
        for iseed in (42, 43):
            write_trial(root / "hellaswag" / str(iseed) / str(n), "hellaswag", seed, lr, 0.56 + 0.04 * n,
                        config={"intermediate": {"seed": iseed, "fields": ["ctx"]},
                                "target": {"fields": ["sentence1", "sentence2"]}})
            for size in HASHES:
                write_trial(root / f"realfake_{size}" / str(iseed) / str(n), "realfake", seed, lr,
                            0.52 + 0.06 * n + (0.01 if size else 0.0), intermediate_size=size,
                            config={"intermediate": {"seed": iseed, "sources": ["a.json", "b.raw"]},
                                    "target": {"fields": ["sentence1", "sentence2"]}})
    write_trial(root / "none" / "failed", "none", 42, 3e-5, None, status="failed",
                config={"target": {"fields": ["sentence1", "sentence2"]}})
    for path in root.rglob("metrics.json"):
        m = json.loads(path.read_text())
        m["data_files"] = {"target.train": "41e3a9b06343"}
        if m["intermediate"] == "realfake":
            m["data_files"]["intermediate.sources.0"] = HASHES[m["config"]["intermediate"]["train_size"]]
        path.write_text(json.dumps(m))
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
