"""The slurm launcher's machinery for real: submitit's local executor (hydra/launcher=submitit_local)
pickles the task, runs each trial in a job process of its own and collects the results. A 2-trial
sweep through it gives the same metrics as the sequential local launcher."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# One thread per trial: both launchers then reduce in the same order, so the numbers match exactly.
TINY = ["target.train_size=16", "target.eval_size=16", "trainer.max_epochs=1", "trainer.num_threads=1",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "seed=1,2"]


def sweep(launcher: list[str], sweep_dir: Path, data_dir: Path, cache_dir: Path) -> dict[int, dict]:
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(cache_dir))
    r = subprocess.run([sys.executable, "-m", "stilts_lab", "-m", *TINY, *launcher, f"hydra.sweep.dir={sweep_dir}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = {}
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        with open(path.parent / "logs" / "target" / "csv" / "metrics.csv") as f:
            losses = [float(row["train_loss"]) for row in csv.DictReader(f) if row.get("train_loss")]
        trials[m["seed"]] = {"status": m["status"], "config_hash": m["config_hash"], "losses": losses,
                             "dev": m["dev_metrics_per_epoch"], "best": m["best_dev_metric"]}
    return trials


@pytest.mark.slow
def test_submitit_local_sweep_matches_the_local_launcher(tmp_path, data_dir, cache_dir):
    local = sweep(["hydra/launcher=local"], tmp_path / "local", data_dir, cache_dir)
    submitit = sweep(["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], tmp_path / "submitit",
                     data_dir, cache_dir)
    assert sorted(local) == sorted(submitit) == [1, 2]
    # each trial ran in a submitit job: its pickled result and the job's log are in the sweep folder
    assert len(list((tmp_path / "submitit" / ".submitit").glob("*/*_result.pkl"))) == 2
    for seed in (1, 2):
        assert local[seed]["losses"], "no training loss was logged"
        assert submitit[seed] == local[seed], seed
    assert local[1]["losses"] != local[2]["losses"]  # the seeds differ, so equality above means something
