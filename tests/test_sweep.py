"""Real sweeps through the CLI: parallel trials share one intermediate training; a sweep run again into
the same folder skips what finished; a sweep killed at several points resumes to the parallel sweep's
metrics."""
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


def sweep(args, *, data_dir, cache_dir, sweep_dir):
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(cache_dir))
    cmd = [sys.executable, "-m", "stilts_lab", "-m", f"hydra.sweep.dir={sweep_dir}", *TINY, *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def trial_metrics(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))}


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sweep_dir.glob("*/*.log"))


# A small intermediate stage on real COPA rows: no generator to load, seconds to train.
COPA_INTERMEDIATE = ["intermediate=copa", "intermediate.train_size=16", "intermediate.eval_size=8",
                     "intermediate.max_steps=2", "intermediate.batch_size=8"]


# One thread per trial in every sweep here, so that the parallel sweep and the sequential ones reduce in the
# same order and their metrics can be compared exactly.
ARGS = COPA_INTERMEDIATE + ["seed=1,2,3", "trainer.num_threads=1"]


@pytest.fixture(scope="module")
def parallel_sweep(tmp_path_factory, data_dir):
    """The guide's parallel sweep, built once: the sweep folder, its cache and the finished command."""
    root = tmp_path_factory.mktemp("parallel")
    sweep_dir, cache = root / "sweep", root / "cache"  # a fresh cache: the training happens here
    r = sweep(["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *ARGS], data_dir=data_dir, cache_dir=cache,
              sweep_dir=sweep_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    return sweep_dir, cache


@pytest.mark.slow
def test_parallel_sweep_trains_the_intermediate_once(parallel_sweep, data_dir):
    """2 joblib workers start at once on 3 trials that need the same intermediate checkpoint: one
    trains it under the file lock, the other waits and reuses it, as does the third trial (4 processes
    on one cache key: tests/test_cache_races.py). Resumed without the guide's parallel launcher, the
    sweep finds every trial finished."""
    sweep_dir, cache = parallel_sweep
    trials = trial_metrics(sweep_dir)
    assert len(trials) == 3 and all(m["status"] in ("ok", "diverged") for m in trials.values())
    assert len({m["intermediate_checkpoint"]["path"] for m in trials.values()}) == 1
    assert len({m["config_hash"] for m in trials.values()}) == 3
    assert len({m["run_id"] for m in trials.values()}) == 1  # the workers share the command's id
    assert job_logs(sweep_dir).count("training intermediate stage") == 1
    assert job_logs(sweep_dir).count("reusing intermediate checkpoint") == 2

    before = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")}
    sequential = [a for a in ARGS if not a.startswith("trainer.num_threads")]  # and all threads: same trials
    r = sweep(sequential, data_dir=data_dir, cache_dir=cache, sweep_dir=sweep_dir)
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


COMPLETED = "intermediate copa: best dev"  # logged once the checkpoint is renamed into place


def start(sweep_dir: Path, cache: Path, data_dir: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(cache))
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "stilts_lab", "-m", f"hydra.sweep.dir={sweep_dir}", *TINY, *ARGS],
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
def test_killed_sweep_resumes_to_the_uninterrupted_metrics(parallel_sweep, tmp_path, data_dir):
    """Fault injection: the sequential sweep of the same trials is killed with SIGKILL to its whole
    process group at several points (during the intermediate stage, while it writes the checkpoint,
    between trials) and run again into the same folder each time. The last run must end with the
    metrics of the uninterrupted (parallel) sweep, nothing corrupt, and the intermediate stage
    completed once."""
    reference = results(parallel_sweep[0])

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
    assert sorted(resumed) == sorted(reference) == [1, 2, 3]
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
