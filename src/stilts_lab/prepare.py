"""The prepare phase: every real-fake set and intermediate checkpoint a sweep needs, one job per key,
before any target trial runs.

    python -m stilts_lab.prepare [--trials] <the sweep's overrides, launcher ones included>

Without it, every trial that needs a checkpoint waits on its file lock while one trial trains it: on a
SLURM array of 32 GPUs, 31 sit idle for the whole intermediate stage, and a long one times them out.
Here the sweep is expanded as Hydra would (transfer/plan.expand), each trial's checkpoint key computed
without training anything (checkpoints.expected_key), and one job per distinct key launched through the
sweep's own launcher (local, joblib, SLURM: `python -m stilts_lab.prepare_job -m`), each running
checkpoints.intermediate_checkpoint. With --trials the sweep itself follows once they all succeeded,
its trials started with require_prepared=true: they read the checkpoints and train none.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from stilts_lab.errors import StiltsError

PLAN_FILE = "prepare_plan.json"


def is_hydra_override(override: str) -> bool:
    """Overrides for Hydra itself (launcher, sweep dir), not for the trials' configs."""
    return override.lstrip("+~").startswith("hydra")


def sweep_dir(overrides: Sequence[str]) -> Path | None:
    for o in overrides:
        if o.startswith("hydra.sweep.dir="):
            return Path(o.split("=", 1)[1])
    return None


def plan_jobs(overrides: Sequence[str]) -> list[dict]:
    """One entry per distinct intermediate checkpoint of the sweep: {key, intermediate, folder,
    overrides, trials}, the overrides of the first trial that needs it."""
    from stilts_lab.checkpoints import checkpoint_folder, expected_key
    from stilts_lab.checks import check_config
    from stilts_lab.compose import compose_config
    from stilts_lab.transfer.plan import expand

    jobs: dict[str, dict] = {}
    for trial in expand([o for o in overrides if not is_hydra_override(o)]):
        cfg = compose_config(trial)
        if str(cfg.intermediate.name) == "none":
            continue
        check_config(cfg)
        key = expected_key(cfg)
        job = jobs.setdefault(key, {"key": key, "intermediate": str(cfg.intermediate.name),
                                    "folder": str(checkpoint_folder(cfg, key)),
                                    "overrides": list(trial), "trials": 0})
        job["trials"] += 1
    return list(jobs.values())


def launch(jobs: list[dict], hydra_overrides: Sequence[str], folder: Path) -> int:
    """prepare_job over the plan's indices, through the sweep's launcher; its exit code."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / PLAN_FILE
    plan.write_text(json.dumps(jobs, indent=2), encoding="utf-8")
    launcher = [o for o in hydra_overrides if not o.startswith("hydra.sweep.dir=")]
    command = [sys.executable, "-m", "stilts_lab.prepare_job", "-m", f"+prepare.plan={plan}",
               "+prepare.index=" + ",".join(str(i) for i in range(len(jobs))), *launcher,
               f"hydra.sweep.dir={folder / 'jobs'}"]
    return subprocess.run(command).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_lab.prepare",
        description="Build every real-fake set and train every intermediate checkpoint a sweep needs, one job "
                    "per checkpoint, through the sweep's launcher; with --trials, then run the sweep, whose "
                    "trials only read them.",
        epilog="example: python -m stilts_lab.prepare --trials +experiment=verdict_matrix hydra/launcher=slurm "
               "hydra.launcher.partition=gpu hydra.sweep.dir=multirun/verdict")
    parser.add_argument("--trials", action="store_true", help="then run the sweep (require_prepared=true)")
    parser.add_argument("overrides", nargs="*", help="the sweep's Hydra overrides, as for python -m stilts_lab -m")
    args = parser.parse_args(argv)
    from stilts_lab.checkpoints import checkpoint_problem
    try:
        jobs = plan_jobs(args.overrides)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    hydra_overrides = [o for o in args.overrides if is_hydra_override(o)]
    root = sweep_dir(args.overrides)
    folder = (root or Path("multirun") / "prepare") / ".prepare"
    trials = sum(j["trials"] for j in jobs)
    print(f"{len(jobs)} intermediate checkpoint(s) for {trials} trial(s) that need one:")
    for job in jobs:
        print(f"  {job['intermediate']}-{job['key']}  ({job['trials']} trials)")
    if jobs:
        code = launch(jobs, hydra_overrides, folder)
        # the checkpoints themselves, not only the exit code: a launcher may not report a failed job
        missing = [j for j in jobs if checkpoint_problem(Path(j["folder"])) is not None]
        if code != 0 or missing:
            print(f"error: {len(missing)} of {len(jobs)} prepare job(s) failed (exit {code}); their logs are "
                  f"under {folder / 'jobs'}; the trials were not started", file=sys.stderr)
            for job in missing:
                print(f"  {job['folder']}: {checkpoint_problem(Path(job['folder']))}", file=sys.stderr)
            return code or 1
    if not args.trials:
        return 0
    command = [sys.executable, "-m", "stilts_lab", "-m", *args.overrides, "require_prepared=true"]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
