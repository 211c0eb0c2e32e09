"""Fault injection: a small sweep (an intermediate stage, then two target trials) is killed with
SIGKILL to its whole process group at several points, including during the intermediate stage and
while it writes the checkpoint, and run again into the same folder each time. The last run must end
with the metrics of an uninterrupted run, nothing corrupt, and the intermediate stage completed once."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

ARGS = ["target.train_size=16", "target.eval_size=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "intermediate=copa", "intermediate.train_size=16", "intermediate.eval_size=8", "intermediate.max_steps=2",
        "intermediate.batch_size=8", "seed=1,2"]
COMPLETED = "intermediate copa: best dev"  # logged once the checkpoint is renamed into place


def start(sweep_dir: Path, cache: Path, data_dir: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(cache))
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "stilts_lab", "-m", f"hydra.sweep.dir={sweep_dir}", *ARGS],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(proc: subprocess.Popen, reached, what: str, timeout: float = 600) -> None:
    """SIGKILL the sweep's process group as soon as `reached()` holds (polled every few ms)."""
    deadline = time.time() + timeout
    while not reached():
        assert proc.poll() is None, f"the sweep ended before {what}"
        assert time.time() < deadline, f"never reached {what}"
        time.sleep(0.003)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def results(sweep_dir: Path) -> dict[int, dict]:
    trials = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]
    return {m["seed"]: m for m in trials}


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_uninterrupted_metrics(tmp_path, data_dir):
    reference_dir = tmp_path / "reference"
    r = start(reference_dir, tmp_path / "reference_cache", data_dir, tmp_path / "reference.log")
    assert r.wait(timeout=900) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    reference = results(reference_dir)

    sweep_dir, cache = tmp_path / "sweep", tmp_path / "cache"
    ckpts = cache / "intermediate"
    in_stage = lambda: any(ckpts.glob("copa-*.lock"))              # the lock is taken: the stage has begun
    writing = lambda: any(ckpts.glob(".copa-*.tmp-*/*"))           # save_pretrained is filling the temp folder
    first_trial_done = lambda: (sweep_dir / "0" / "metrics.json").is_file()
    # Hydra is writing the second trial's .hydra/ files (made by this attempt, not an earlier one)
    second_trial_started = lambda: any(p.stat().st_mtime > started for p in (sweep_dir / "1").glob(".hydra/*"))
    logs, started = [], 0.0

    def attempt(reached, what, delay=0.0):
        nonlocal started
        logs.append(tmp_path / f"attempt{len(logs)}.log")
        started = time.time()
        proc = start(sweep_dir, cache, data_dir, logs[-1])
        kill_when(proc, lambda: reached() and (time.sleep(delay) or True), what)

    attempt(in_stage, "the intermediate stage", delay=0.5)
    assert not list(ckpts.glob("copa-*/stage_metrics.json")), "killed too late: the stage had finished"
    attempt(writing, "the checkpoint write")
    assert not list(ckpts.glob("copa-*/stage_metrics.json")), "killed too late: the checkpoint was in place"
    assert list(ckpts.glob(".copa-*.tmp-*")), "a half-written checkpoint is left in a dot-named temp folder"
    attempt(second_trial_started, "the start of the second trial")  # the first one has finished
    assert first_trial_done() and not (sweep_dir / "1" / "metrics.json").exists()

    logs.append(tmp_path / "resume.log")
    proc = start(sweep_dir, cache, data_dir, logs[-1])
    assert proc.wait(timeout=900) == 0, logs[-1].read_text()[-3000:]

    resumed = results(sweep_dir)
    assert sorted(resumed) == sorted(reference) == [1, 2]
    for seed, ref in reference.items():
        got = resumed[seed]
        assert got["status"] == ref["status"] and got["status"] in ("ok", "diverged")
        assert got["config_hash"] == ref["config_hash"]
        assert got["dev_metric_per_epoch"] == ref["dev_metric_per_epoch"]
        assert got["intermediate_checkpoint"]["key"] == ref["intermediate_checkpoint"]["key"]
    output = "".join(log.read_text() for log in logs)
    assert output.count(COMPLETED) == 1, "the intermediate stage must complete exactly once"
    assert output.count("training intermediate stage") == 3  # two killed attempts, one that finished
    # nothing half-written is left where a reader could take it for a result
    assert not list(ckpts.glob(".copa-*.tmp-*"))
    assert not list(sweep_dir.rglob(".metrics.json.*"))
