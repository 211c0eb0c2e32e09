"""Real sweeps through the CLI: parallel trials share one intermediate training; a killed sweep,
run again into the same folder, skips what finished."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

TINY = ["target.train_size=24", "target.eval_size=24", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def sweep(args, *, data_dir, cache_dir, sweep_dir, popen=False):
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(cache_dir))
    cmd = [sys.executable, "-m", "stilts_lab", "-m", f"hydra.sweep.dir={sweep_dir}", *TINY, *args]
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def trial_metrics(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))}


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sweep_dir.glob("*/*.log"))


# A small intermediate stage on real COPA rows: no generator to load, seconds to train.
COPA_INTERMEDIATE = ["intermediate=copa", "intermediate.train_size=16", "intermediate.eval_size=8",
                     "intermediate.max_steps=2", "intermediate.batch_size=8"]


@pytest.mark.slow
def test_parallel_sweep_trains_the_intermediate_once(tmp_path, data_dir):
    """2 joblib workers start at once on 3 trials that need the same intermediate checkpoint: one
    trains it under the file lock, the other waits and reuses it, as does the third trial (4 processes
    on one cache key: tests/test_cache_races.py). Resumed without the README's
    parallel settings (sequential, all threads), the sweep finds every trial finished."""
    sweep_dir, cache = tmp_path / "sweep", tmp_path / "cache"  # a fresh cache: the training happens here
    args = COPA_INTERMEDIATE + ["seed=1,2,3"]
    r = sweep(["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "trainer.num_threads=1", *args],
              data_dir=data_dir, cache_dir=cache, sweep_dir=sweep_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = trial_metrics(sweep_dir)
    assert len(trials) == 3 and all(m["status"] in ("ok", "diverged") for m in trials.values())
    assert len({m["intermediate_checkpoint"]["path"] for m in trials.values()}) == 1
    assert len({m["config_hash"] for m in trials.values()}) == 3
    assert len({m["run_id"] for m in trials.values()}) == 1  # the workers share the command's id
    assert job_logs(sweep_dir).count("training intermediate stage") == 1
    assert job_logs(sweep_dir).count("reusing intermediate checkpoint") == 2

    before = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")}
    r = sweep(args, data_dir=data_dir, cache_dir=cache, sweep_dir=sweep_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("skipping finished trial") == 3
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")} == before


def test_sweep_exit_code_counts_this_commands_failures(tmp_path, monkeypatch, capsys):
    """After all trials ran: exit 1 when any trial of this command failed, listing where each error
    is; failures left by an earlier command in the same folder are not this command's."""
    from omegaconf import OmegaConf

    from stilts_lab.sweep_status import SweepExitCode

    def trial(num, status, run_id, error=None):
        (tmp_path / num).mkdir()
        (tmp_path / num / "metrics.json").write_text(json.dumps({"status": status, "run_id": run_id, "error": error}))

    trial("0", "ok", "now")
    trial("1", "failed", "now", "DataError: rte/train.tsv:7: unknown label 'maybe'")
    trial("2", "failed", "earlier", "ConfigError: an older failure")
    trial("3", "diverged", "now")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    monkeypatch.setenv("STILTS_RUN_ID", "now")
    with pytest.raises(SystemExit) as exit_:
        SweepExitCode().on_multirun_end(config)
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err.startswith("error: 1 of the 3 trials this command ran failed")
    assert f"{tmp_path / '1' / 'metrics.json'}: DataError: rte/train.tsv:7: unknown label 'maybe'" in err
    assert "older failure" not in err
    monkeypatch.setenv("STILTS_RUN_ID", "a-command-whose-trials-all-passed")
    SweepExitCode().on_multirun_end(config)  # returns: exit code 0


def test_importing_the_pipeline_leaves_the_environment_alone():
    """The run id is read (results.run_id), never set on import: a notebook that imports the pipeline
    and then launches a sweep must not hand every later command the same id."""
    probe = ("import os; os.environ.pop('STILTS_RUN_ID', None); import stilts_lab.pipeline as p; "
             "from stilts_lab.results import run_id; a = run_id(); "
             "assert 'STILTS_RUN_ID' not in os.environ, 'set on import'; "
             "os.environ['STILTS_RUN_ID'] = 'cmd'; assert run_id() == 'cmd' and a != 'cmd'")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
