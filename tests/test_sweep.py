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


@pytest.mark.slow
def test_parallel_sweep_trains_the_intermediate_once(tmp_path, data_dir, cache_dir):
    sweep_dir = tmp_path / "sweep"
    # intermediate.lr makes this key unlike any other test's, so the checkpoint is new here
    r = sweep(["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "trainer.num_threads=1",
               "intermediate=realfake", "intermediate.train_size=24", "intermediate.eval_size=8",
               "intermediate.max_epochs=1", "intermediate.lr=2e-4", "seed=1,2", "optim.warmup_ratio=0,0.1"],
              data_dir=data_dir, cache_dir=cache_dir, sweep_dir=sweep_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = trial_metrics(sweep_dir)
    assert len(trials) == 4 and all(m["status"] in ("ok", "diverged") for m in trials.values())
    assert len({m["intermediate_checkpoint"]["path"] for m in trials.values()}) == 1
    assert len({m["config_hash"] for m in trials.values()}) == 4
    assert job_logs(sweep_dir).count("training intermediate stage") == 1


@pytest.mark.slow
def test_killed_sweep_resumes_without_repeating(tmp_path, data_dir, cache_dir):
    sweep_dir = tmp_path / "sweep"
    args = ["seed=1,2,3"]
    proc = sweep(args, data_dir=data_dir, cache_dir=cache_dir, sweep_dir=sweep_dir, popen=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(trial_metrics(sweep_dir)) < 1:
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")}
    assert before, "no trial finished before the kill"

    r = sweep(args, data_dir=data_dir, cache_dir=cache_dir, sweep_dir=sweep_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = trial_metrics(sweep_dir)
    assert sorted(m["seed"] for m in trials.values()) == [1, 2, 3]
    assert all(m["status"] in ("ok", "diverged") for m in trials.values())
    for path, mtime in before.items():  # finished trials were not run again
        assert path.stat().st_mtime_ns == mtime
    assert job_logs(sweep_dir).count("skipping finished trial") >= len(before)
