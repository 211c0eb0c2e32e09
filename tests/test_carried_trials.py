"""A sweep that outlives its machine: its finished trials travel as a report's results.csv at the top of
the sweep dir (resume.CARRIED_FILE). A trial listed there is not run again, and the report reads the
carried rows beside the metrics.json of trials run since, each trial once."""
import json
import shutil

import pytest

from stilts_lab.pipeline import run
from stilts_lab.report import write_report
from stilts_lab.report.cli import main
from stilts_lab.report.collect import collect_trials
from stilts_lab.results import METRICS_FILE
from tests.conftest import TINY, compose_config, spy_stages


@pytest.mark.slow
def test_a_carried_trial_is_not_run_again_and_the_report_counts_each_trial_once(tmp_path, data_dir, cache_dir,
                                                                               monkeypatch):
    first = tmp_path / "machine_a"
    for seed in (1, 2):   # two real tiny trials on "machine A"
        run(compose_config(["+experiment=vanilla_rte", f"seed={seed}"] + TINY, data_dir=data_dir,
                           cache_dir=cache_dir, output_dir=first / f"seed{seed}"))
    written = write_report([first], tmp_path / "report")   # what gets committed: results.csv
    # while a preregistered sweep runs, results.csv alone is committed: the same rows, and no test read
    assert main([str(first), "--out", str(tmp_path / "only"), "--results-only"]) == 0
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == ["results.csv"]
    assert (tmp_path / "only" / "results.csv").read_text() == written["results.csv"].read_text()

    # "machine B": an empty sweep dir holding only the carried results.csv
    sweep = tmp_path / "machine_b"
    sweep.mkdir()
    shutil.copy(written["results.csv"], sweep / "results.csv")
    trained = []
    spy_stages(monkeypatch, lambda real, **kw: trained.append(kw["task"]["name"]) or real(**kw))
    carried = json.loads((first / "seed1" / METRICS_FILE).read_text())
    # seed 1 runs in the sweep dir itself (sweep_root outside a Hydra multirun is the run's own dir)
    again = run(compose_config(["+experiment=vanilla_rte", "seed=1"] + TINY, data_dir=data_dir, cache_dir=cache_dir,
                               output_dir=sweep))
    assert trained == []                                     # nothing trained: the carried row says finished
    assert again["status"] == carried["status"] and again["best_dev_metric"] == pytest.approx(carried["best_dev_metric"])
    assert not (sweep / METRICS_FILE).exists()               # the row stays in the CSV, not copied

    # a new trial of the same sweep, then the report: the carried trials and the new one, each once
    run(compose_config(["+experiment=vanilla_rte", "seed=3"] + TINY, data_dir=data_dir, cache_dir=cache_dir,
                       output_dir=sweep / "seed3"))
    assert trained == ["rte"]
    df = collect_trials([sweep])
    assert sorted(df["seed"].astype(int)) == [1, 2, 3] and df["config_hash"].is_unique
    # the same trial as a metrics.json beside its carried row is counted once
    shutil.copytree(first / "seed1", sweep / "seed1")
    assert len(collect_trials([sweep])) == 3
