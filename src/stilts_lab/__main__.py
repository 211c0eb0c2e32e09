"""python -m stilts_lab [+experiment=NAME] [overrides]   (Hydra; -m for sweeps)"""
from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

import hydra
from omegaconf import DictConfig

from stilts_lab.errors import StiltsError

log = logging.getLogger("stilts_lab")


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    return HydraConfig.get().mode == RunMode.MULTIRUN


def _check_before_heavy_imports(cfg: DictConfig) -> None:
    """A typo answers in a second, before torch, Lightning and transformers load (~8 s). Its trial
    still leaves a metrics.json that says failed, as one failing later would (without the versions and
    device, which need those imports). In a sweep each trial's own check in pipeline.run does this."""
    from stilts_lab.checks import check_config
    from stilts_lab.identity import data_hashes
    try:
        check_config(cfg)
    except StiltsError as e:
        write_failed(cfg, e, data_files=data_hashes(cfg))
        raise


def write_failed(cfg: DictConfig, error: BaseException, **extra) -> None:
    """The trial's metrics.json saying failed and why, for a failure before pipeline.run records its own."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from stilts_lab.identity import config_hash
    from stilts_lab.results import METRICS_FILE, write_json_atomic
    out = Path(HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        digest = config_hash(cfg)
    except Exception:   # what broke may be the data the hash reads
        digest = None
    write_json_atomic(out / METRICS_FILE, {
        "status": "failed", "error": f"{type(error).__name__}: {error}", "config_hash": digest,
        "target": cfg.target.get("name"), "intermediate": cfg.intermediate.get("name"),
        "config": OmegaConf.to_container(cfg, resolve=True), **extra})


def _own_gpu_per_worker(cfg: DictConfig) -> None:
    """In a joblib worker of a GPU sweep, before CUDA starts here: this worker's own GPU (gpu_slots)."""
    from hydra.core.hydra_config import HydraConfig
    if "joblib" not in str(HydraConfig.get().launcher.get("_target_", "")):
        return
    if str(cfg.trainer.get("accelerator")) not in ("gpu", "cuda"):
        return
    from stilts_lab.gpu_slots import assign_gpu
    # one slot folder per command: its workers share it, another command's do not
    gpu = assign_gpu(Path(HydraConfig.get().sweep.dir) / ".gpu_slots" / os.environ.get("STILTS_RUN_ID", "run"))
    if gpu is not None:
        log.info("worker %d: GPU %s", os.getpid(), gpu)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")  # src/stilts_lab/conf -> conf/
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from stilts_lab.command_line import unread_additions
    for warning in unread_additions(HydraConfig.get().overrides.task, cfg):
        log.warning(warning)   # Hydra's console handler prints it
    try:
        if not _in_sweep():
            _check_before_heavy_imports(cfg)
        else:
            _own_gpu_per_worker(cfg)
        from stilts_lab.pipeline import run  # heavy imports after Hydra has parsed the command line
        from stilts_lab.logging_setup import one_line_per_message
        one_line_per_message()  # after Hydra set up its handlers, before any Trainer logs
        return run(cfg)["best_dev_metric"]
    except StiltsError as e:
        # The user's input is wrong: one line, no traceback. In a sweep it may concern only some
        # trials (one real-fake size too large for the source text): those fail, the rest run, and
        # the sweep exits non-zero at the end (sweep_status.SweepExitCode).
        log.error("error: %s", e)
        print(f"error: {e}", file=sys.stderr)
        if not _in_sweep():
            sys.exit(1)
        return None
    except Exception as e:
        if not _in_sweep():
            raise
        # One crashed trial must not end the sweep: its metrics.json says failed (with the error),
        # and running the sweep again re-runs it.
        log.exception("trial failed; the sweep goes on")
        record_crash(cfg, e)
        return None


def record_crash(cfg: DictConfig, error: BaseException) -> None:
    """A trial that crashed before pipeline.run could record it (a signal during the imports, a broken
    install): a failed metrics.json of this command, so the sweep's exit code counts it. Never over a
    finished result, nor over pipeline.run's own record of this failure."""
    from hydra.core.hydra_config import HydraConfig
    from stilts_lab.results import METRICS_FILE, read_metrics, run_id
    path = Path(HydraConfig.get().runtime.output_dir) / METRICS_FILE
    prior = read_metrics(path) if path.is_file() else None
    if isinstance(prior, dict) and (prior.get("status") != "failed" or prior.get("run_id") == run_id()):
        return
    write_failed(cfg, error, run_id=run_id())


if __name__ == "__main__":
    from stilts_lab.command_line import unknown_group_choice
    # a user's own config dirs (hydra.searchpath) may hold more options: Hydra decides there
    if not any("searchpath" in a for a in sys.argv[1:]) and (problem := unknown_group_choice(sys.argv[1:])):
        print(problem, file=sys.stderr)
        sys.exit(1)
    # A new id for this command, set before Hydra launches anything: sweep workers inherit it, so
    # the trials of one command are told from an earlier one's (sweep_status, pipeline's DIVERGED_SUFFIX).
    os.environ["STILTS_RUN_ID"] = uuid.uuid4().hex[:12]
    main()
