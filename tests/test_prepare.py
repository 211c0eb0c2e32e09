"""The prepare phase: one job per intermediate checkpoint a sweep needs, then trials that only read them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stilts_lab.prepare import is_hydra_override, plan_jobs
from stilts_lab.results import METRICS_FILE

SMALL = ["target.train_size=32", "target.eval_size=32", "trainer.max_epochs=1", "intermediate.train_size=32",
         "intermediate.eval_size=16", "intermediate.max_epochs=1", "trainer.enable_progress_bar=false"]


def test_the_plan_has_one_job_per_checkpoint(data_dir, monkeypatch):
    """Six trials: two seeds x (copa, socialiqa, vanilla). The two target seeds share each checkpoint,
    vanilla needs none: two jobs. Another intermediate seed is another checkpoint."""
    monkeypatch.setenv("STILTS_DATA_DIR", str(data_dir))
    jobs = plan_jobs(["intermediate=copa,socialiqa,none", "seed=1,2", "hydra/launcher=parallel", *SMALL])
    assert sorted((j["intermediate"], j["trials"]) for j in jobs) == [("copa", 2), ("socialiqa", 2)]
    assert len({j["key"] for j in jobs}) == 2
    assert all(not is_hydra_override(o) for j in jobs for o in j["overrides"])
    seeds = plan_jobs(["intermediate=copa", "intermediate.seed=1,2", "seed=1,2", *SMALL])
    assert [j["trials"] for j in seeds] == [2, 2] and len({j["key"] for j in seeds}) == 2


def _run(args, cwd, env):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_after_prepare_no_trial_trains_an_intermediate_stage(tmp_path, data_dir):
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1")
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    overrides = ["intermediate=copa,none", "seed=1,2", *SMALL, f"paths.cache_dir={cache}",
                 f"hydra.sweep.dir={sweep}"]
    # require_prepared before anything was prepared: the copa trials fail, naming the command to run
    early = _run(["stilts_lab", "-m", *overrides, "require_prepared=true", f"hydra.sweep.dir={tmp_path / 'early'}"],
                 tmp_path, env)
    assert early.returncode != 0
    failed = [json.loads(p.read_text()) for p in (tmp_path / "early").rglob(METRICS_FILE)]
    assert sorted(m["status"] for m in failed if m["intermediate"] == "copa") == ["failed", "failed"]
    assert all("python -m stilts_lab.prepare" in m["error"] for m in failed if m["intermediate"] == "copa")
    assert not (cache / "intermediate").exists() or not any((cache / "intermediate").glob("copa-*/stage_metrics.json"))

    done = _run(["stilts_lab.prepare", "--trials", *overrides], tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 intermediate checkpoint(s) for 2 trial(s)" in done.stdout
    plan = json.loads((sweep / ".prepare" / "prepare_plan.json").read_text())
    trials = [json.loads(p.read_text()) for p in sweep.glob(f"*/{METRICS_FILE}")]
    assert len(trials) == 4 and all(m["status"] != "failed" for m in trials)
    assert {m["intermediate_checkpoint"]["key"] for m in trials if m["intermediate"] == "copa"} == {plan[0]["key"]}
    logs = "".join(p.read_text() for p in sweep.glob("*/*.log"))
    assert logs.count("reading prepared intermediate checkpoint") == 2
    assert "training intermediate stage" not in logs
    jobs_log = "".join(p.read_text() for p in (sweep / ".prepare" / "jobs").rglob("*.log"))
    assert jobs_log.count("training intermediate stage copa") == 1
