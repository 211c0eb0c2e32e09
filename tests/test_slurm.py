"""hydra/launcher=slurm on a real single-node SLURM cluster (tests/slurm_cluster.py): the guide's 2-trial
sweep runs as a job array; a trial whose job is cancelled (scancel) mid-stage, or runs past its time
limit, is a failed trial that the same command run again completes (the cancelled one alone, to the
metrics of the uninterrupted sweep). Skipped without the SLURM packages, except under STILTS_REQUIRE_SLURM (CI)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.slurm_cluster import PARTITION, slurm_cluster  # noqa: F401  (the fixture)

# The launcher settings, and a limit under the test partition's MaxTime (slurm.yaml says 240).
LAUNCHER = ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4"]
LIMIT = ["hydra.launcher.timeout_min=10"]
# Tiny trials: 8 training steps, a loss logged at each. One thread: a job gets one CPU.
TRIAL = ["target.eval_size=32", "trainer.max_epochs=1", "trainer.num_threads=1", "trainer.enable_progress_bar=false",
         "trainer.log_every_n_steps=1"]
SWEEP = [*TRIAL, "target.train_size=128", "seed=1,2"]
STAGE_STARTED = "SLURM auto-requeueing enabled"  # Lightning, as fit() begins inside a SLURM job


def command(sweep_dir: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "stilts_lab", "-m", *args, f"hydra.sweep.dir={sweep_dir}"]


def environment(cluster, data_dir: Path, cache_dir: Path) -> dict:
    return dict(cluster.env, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(cache_dir))


def run(cluster, sweep_dir, args, data_dir, cache_dir, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(command(sweep_dir, args), cwd=REPO, env=environment(cluster, data_dir, cache_dir),
                          capture_output=True, text=True, timeout=timeout)


def trials(sweep_dir: Path) -> dict[int, dict]:
    """seed -> metrics.json, with the training losses of its metrics.csv (when it finished)."""
    found = {}
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        losses = path.parent / "logs" / "target" / "csv" / "metrics.csv"
        if losses.exists():
            with losses.open() as f:
                m["losses"] = [float(row["train_loss"]) for row in csv.DictReader(f) if row.get("train_loss")]
        found[m["seed"]] = m | {"path": path}
    return found


def jobs(sweep_dir: Path) -> dict[str, int]:
    """SLURM job -> the trial (hydra.job.num) it ran, from submitit's folders: a sweep of several trials is
    an array (<job>_<index>), a sweep of one a plain job."""
    return {p.parent.name: int(p.parent.name.partition("_")[2] or 0)
            for p in (sweep_dir / ".submitit").glob("*/*_submitted.pkl")}


def job_log(sweep_dir: Path, job: str) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((sweep_dir / ".submitit" / job).glob("*_log.*")))


def same_result(got: dict, ref: dict) -> None:
    assert got["status"] == ref["status"] and got["status"] in ("ok", "diverged"), (got["status"], got["error"])
    for key in ("config_hash", "dev_metric_per_epoch", "best_dev_metric", "trivial_baseline", "losses"):
        assert got[key] == ref[key], key


@pytest.fixture(scope="module")
def uninterrupted(slurm_cluster, tmp_path_factory, data_dir, cache_dir):  # noqa: F811
    """The issue's sweep, as a new user runs it: 2 trials through hydra/launcher=slurm."""
    sweep_dir = tmp_path_factory.mktemp("slurm") / "uninterrupted"
    done = run(slurm_cluster, sweep_dir, [*SWEEP, *LAUNCHER, *LIMIT], data_dir, cache_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep_dir, done


@pytest.mark.slow
def test_sweep_runs_as_a_slurm_job_array(slurm_cluster, uninterrupted):  # noqa: F811
    sweep_dir, _ = uninterrupted
    results = trials(sweep_dir)
    assert sorted(results) == [1, 2]
    assert all(m["status"] in ("ok", "diverged") and m["losses"] for m in results.values())
    assert results[1]["losses"] != results[2]["losses"]  # the seeds differ, so equal results below mean something
    # one array task per trial, each with its pickled result and its log in <sweep>/.submitit/<job>_<index>/
    array = jobs(sweep_dir)
    assert sorted(array.values()) == [0, 1] and len({j.rsplit("_", 1)[0] for j in array}) == 1
    for job in array:
        assert list((sweep_dir / ".submitit" / job).glob("*_result.pkl")), job
    # SLURM ran them: the accounting says both completed, and a log says where
    assert slurm_cluster.accounting(next(iter(array)).rsplit("_", 1)[0]) == {job: "COMPLETED" for job in array}
    assert all("trial finished" in job_log(sweep_dir, job) for job in array)


@pytest.mark.slow
def test_cancelled_trial_alone_reruns_to_the_uninterrupted_metrics(slurm_cluster, uninterrupted, tmp_path,  # noqa: F811
                                                                 data_dir, cache_dir):
    """scancel the first trial's job while its target stage trains. The launcher stops with an error
    naming the cancelled job (the other job runs on to its end); the same command run again runs only
    the cancelled trial, and both trials end with the uninterrupted sweep's metrics."""
    reference = trials(uninterrupted[0])
    sweep_dir, log = tmp_path / "sweep", tmp_path / "first.log"
    args = [*SWEEP, *LAUNCHER, *LIMIT]
    with log.open("w") as out:
        proc = subprocess.Popen(command(sweep_dir, args), cwd=REPO, env=environment(slurm_cluster, data_dir, cache_dir),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        trial_log = sweep_dir / "0" / "__main__.log"
        deadline = time.time() + 300
        while not (trial_log.exists() and STAGE_STARTED in trial_log.read_text(errors="replace")):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the first trial's stage never started"
            time.sleep(0.1)
        time.sleep(0.5)  # a few training steps in
        cancelled = next(job for job, state in slurm_cluster.queue().items() if job.endswith("_0"))
        slurm_cluster.run("scancel", cancelled)
        assert proc.wait(timeout=300) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    first = log.read_text()
    assert "UncompletedJobError" in first and f"Job {cancelled}" in first and "CANCELLED" in first, first[-3000:]
    # the launcher gave up at the cancelled job; wait for the other one before running the command again
    slurm_cluster.wait_for_empty_queue()
    array = cancelled.rsplit("_", 1)[0]
    assert slurm_cluster.accounting(array) == {f"{array}_0": "CANCELLED", f"{array}_1": "COMPLETED"}
    before = trials(sweep_dir)
    assert 1 not in before or before[1]["status"] == "failed"  # the cancelled trial (seed 1) did not finish
    assert before[2]["status"] in ("ok", "diverged")
    finished_at = before[2]["path"].stat().st_mtime_ns

    again = run(slurm_cluster, sweep_dir, args, data_dir, cache_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    after = trials(sweep_dir)
    assert sorted(after) == sorted(reference) == [1, 2]
    for seed, ref in reference.items():
        same_result(after[seed], ref)
    # only the cancelled trial ran again: the other's job found its result and left it alone
    assert after[2]["path"].stat().st_mtime_ns == finished_at and after[2]["run_id"] == before[2]["run_id"]
    assert after[1]["run_id"] != before[2]["run_id"]
    rerun = {job: num for job, num in jobs(sweep_dir).items() if not job.startswith(f"{array}_")}
    assert sorted(rerun.values()) == [0, 1]
    for job, num in rerun.items():
        text = job_log(sweep_dir, job)
        assert ("trial finished" in text) == (num == 0) and ("skipping finished trial" in text) == (num == 1), job


@pytest.mark.slow
def test_trial_past_its_time_limit_fails_and_a_rerun_completes(slurm_cluster, tmp_path, data_dir, cache_dir):  # noqa: F811
    """A one-minute limit on a trial that needs longer. submitit asks SLURM for USR2 `signal_delay_s`
    (120 s) before the limit, so with 1 minute it comes at SLURM's first time-limit check (within 30 s
    of the start): the trial ends as timed out. The same command with a longer limit completes it."""
    sweep_dir = tmp_path / "sweep"
    slow = [*TRIAL, "target.train_size=768", "seed=3"]  # 48 steps: well past 30 s with its imports
    first = run(slurm_cluster, sweep_dir, [*slow, *LAUNCHER, "hydra.launcher.timeout_min=1"], data_dir, cache_dir)
    slurm_cluster.wait_for_empty_queue()
    (job,) = jobs(sweep_dir)
    assert "Job has timed out" in job_log(sweep_dir, job), job_log(sweep_dir, job)[-3000:]
    metrics = trials(sweep_dir).get(3)
    if metrics is not None:  # the signal came while the trial ran: it says so, and the sweep exits 1
        assert metrics["status"] == "failed" and "timed-out" in metrics["error"], metrics["error"]
        assert first.returncode == 1 and "1 of the 1 trials this command ran failed" in first.stderr, first.stderr[-3000:]
    # else it came before the trial started (during imports): no metrics.json, nothing finished

    again = run(slurm_cluster, sweep_dir, [*slow, *LAUNCHER, *LIMIT], data_dir, cache_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    done = trials(sweep_dir)[3]
    assert done["status"] in ("ok", "diverged") and len(done["losses"]) == 48
    assert metrics is None or done["run_id"] != metrics["run_id"]
