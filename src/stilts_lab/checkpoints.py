"""Intermediate checkpoints: where one is, whether it can be used, and training it once.

A checkpoint is cached under <cache>/intermediate/<task>-<key>, the key covering everything that
determines it (identity.intermediate_key). It is trained under a file lock (parallel sweep jobs train
it once) into a temp folder that is renamed into place only when complete, so a crash never leaves a
checkpoint that looks finished. A stage that diverges is recorded next to the cache, never saved as a
checkpoint: the trials of the same command that need it fail with a clear error, and a later command
tries again. Each step below reads alone; intermediate_checkpoint() runs them in order, and the
prepare phase (prepare.py) runs the same steps ahead of a sweep.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from stilts_lab.data.task_files import task_files
from stilts_lab.errors import ConfigError, DivergedError
from stilts_lab.identity import cached_file_sha256, intermediate_key
from stilts_lab.intermediate_stage import COMPLETE_FILE, diverged_message, train_into
from stilts_lab.memory import run_isolated
from stilts_lab.models.methods import base_reference
from stilts_lab.results import METRICS_FILE, read_metrics, run_id
from stilts_lab.stage import stage_settings

log = logging.getLogger(__name__)
DIVERGED_SUFFIX = ".diverged.json"    # <cache>/intermediate/<task>-<key>.diverged.json: a failed attempt


def output_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # composed without a Hydra run (tests, notebooks)
        return Path(cfg.get("output_dir") or os.getcwd())


def abspath(path) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def intermediate_data_parts(cfg: DictConfig, realfake_file: Path | None) -> list[str]:
    """The data behind an intermediate checkpoint: a built set's cache key (it covers generator,
    sampling and source hashes), else the hashes of the task's files, else its Hub dataset."""
    if realfake_file is not None:
        return [Path(realfake_file).parent.name]
    data_dir = abspath(cfg.paths.data_dir)
    if data_dir is None:
        return [str(OmegaConf.to_container(cfg.intermediate.get("hf_dataset") or {}))]
    # data files and the files its transforms read (label files), by role
    files = task_files(OmegaConf.to_container(cfg.intermediate, resolve=True), data_dir)
    return [f"{label}:{cached_file_sha256(path)}" for label, path in sorted(files.items())]


def checkpoint_problem(folder: Path) -> str | None:
    """Why a cached intermediate checkpoint cannot be used, or None when it can: its
    stage_metrics.json must parse, must not say diverged, and every file it lists must still have
    the size it was written with (a truncated or half-copied cache fails here, not in from_pretrained)."""
    stage_file = folder / COMPLETE_FILE
    if not stage_file.is_file():
        return "not finished"
    stage = read_metrics(stage_file)
    if not isinstance(stage, dict):
        return f"{stage_file} is unreadable"
    if stage.get("diverged"):
        return "its stage diverged"
    if not stage.get("files"):
        return f"{stage_file} lists no files"
    for name, size in stage["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{path} is missing or truncated (written with {size} bytes)"
    return None


@dataclass
class Checkpoint:
    """Where one intermediate checkpoint lives: its key, its folder, the record a diverged attempt
    leaves, and the built real-fake set it trains on (None for other tasks)."""
    name: str
    key: str
    folder: Path
    realfake_file: Path | None

    @property
    def record(self) -> Path:
        return self.folder.parent / f"{self.folder.name}{DIVERGED_SUFFIX}"


def checkpoint_folder(cfg: DictConfig, key: str) -> Path:
    """Where the checkpoint of cfg's intermediate task under `key` is cached."""
    return Path(abspath(cfg.paths.cache_dir)) / "intermediate" / f"{cfg.intermediate.name}-{key}"


def locate(cfg: DictConfig) -> Checkpoint:
    """The checkpoint a config needs. A real-fake task's set is built first (cached by its own key;
    cheap when built): its key is part of the checkpoint's."""
    realfake_file = None
    if cfg.intermediate.format == "realfake":
        from stilts_lab.synth.realfake import EXAMPLES_FILE, build_from_config
        realfake_file = build_from_config(cfg) / EXAMPLES_FILE
    key = intermediate_key(cfg, intermediate_data_parts(cfg, realfake_file))
    return Checkpoint(cfg.intermediate.name, key, checkpoint_folder(cfg, key), realfake_file)


def expected_key(cfg: DictConfig) -> str | None:
    """The key locate() will find, without building or training anything (a real-fake set's key is
    its spec's hash): what config_hash covers, so that a bump of the recipe or of the generator's
    weights makes every trial that starts from such a checkpoint another trial. None for vanilla."""
    if cfg.intermediate.get("name") in (None, "none"):
        return None
    if cfg.intermediate.get("format") == "realfake":
        from stilts_lab.synth.realfake import key_from_config
        return intermediate_key(cfg, [key_from_config(cfg)])
    return intermediate_key(cfg, intermediate_data_parts(cfg, None))


def refuse_repeat_divergence(ckpt: Checkpoint) -> None:
    """A stage that diverged earlier in this command fails its other trials at once; one that diverged
    in an earlier command is tried again."""
    earlier = read_metrics(ckpt.record) if ckpt.record.is_file() else None
    if earlier is not None and earlier.get("run_id") == run_id():
        raise DivergedError(diverged_message(ckpt.name, ckpt.key, ckpt.record, "earlier in this command"))
    if earlier is not None:
        log.warning("intermediate stage %s diverged in an earlier command (%s); trying again", ckpt.name, ckpt.record)


def stage_arguments(cfg: DictConfig, ckpt: Checkpoint, encoder_source: str) -> dict:
    """train_stage's arguments for the intermediate stage, as plain data (a child gets no Hydra context)."""
    return dict(
        task=OmegaConf.to_container(cfg.intermediate, resolve=True), encoder_source=encoder_source,
        base_model=base_reference(OmegaConf.to_container(cfg.model, resolve=True)),
        settings=stage_settings(cfg, "intermediate"),
        # one carve per file for both stages: under the intermediate's own seed, a task sharing
        # the target's file (hellaswag_p -> hellaswag) would train on the target's dev rows
        trainer_cfg=OmegaConf.to_container(cfg.trainer, resolve=True), seed=int(cfg.intermediate.seed),
        split_seed=int(cfg.data.split_seed), data_dir=abspath(cfg.paths.data_dir),
        cache_dir=abspath(cfg.paths.cache_dir), log_dir=output_dir(cfg) / "logs" / "intermediate",
        logger_cfg=OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else None,
        metrics_file=output_dir(cfg) / METRICS_FILE, random_init=bool(cfg.model.random_init),
        realfake_file=ckpt.realfake_file, num_workers=int(cfg.data.num_workers))


def train_and_publish(cfg: DictConfig, ckpt: Checkpoint, tokenizer, encoder_source: str) -> dict:
    """Train into a temp folder (in a child with trainer.isolate_intermediate), then rename it into
    place. The caller holds the key's lock: temp folders left by killed jobs are garbage."""
    for stale in ckpt.folder.parent.glob(f".{ckpt.folder.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = ckpt.folder.parent / f".{ckpt.folder.name}.tmp-{os.getpid()}"
    log.info("training intermediate stage %s -> %s", ckpt.name, ckpt.folder)
    kwargs = dict(key=ckpt.key, record=ckpt.record, run_id=run_id(), tokenizer=tokenizer,
                  stage=stage_arguments(cfg, ckpt, encoder_source))
    # In a child, the heap glibc keeps after the stage (~0.6 GB in the default run) leaves with it.
    info = (run_isolated(train_into, tmp, **kwargs) if cfg.trainer.get("isolate_intermediate")
            else train_into(tmp, **kwargs))
    shutil.rmtree(ckpt.folder, ignore_errors=True)
    os.replace(tmp, ckpt.folder)
    ckpt.record.unlink(missing_ok=True)
    log.info("intermediate %s: best dev %s %.4f", ckpt.name, info["metric_name"], info["best_dev_metric"] or 0)
    return info


def prepared_checkpoint(cfg: DictConfig) -> tuple[str, Path]:
    """(key, folder) of a checkpoint the prepare phase trained; building or training nothing."""
    key = expected_key(cfg)
    folder = checkpoint_folder(cfg, key)
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise ConfigError(f"require_prepared=true, but intermediate checkpoint {folder} is {problem}: run "
                          "`python -m stilts_lab.prepare <this sweep's overrides>` first (or drop require_prepared)")
    log.info("reading prepared intermediate checkpoint %s", folder)
    return key, folder


def intermediate_checkpoint(cfg: DictConfig, tokenizer, encoder_source: str) -> tuple[str, Path]:
    """(key, folder) of the config's intermediate checkpoint: reused when usable, else trained once
    (with require_prepared, only read: prepared_checkpoint)."""
    if cfg.get("require_prepared"):
        return prepared_checkpoint(cfg)
    ckpt = locate(cfg)
    ckpt.folder.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint_problem(ckpt.folder) is None:
        log.info("reusing intermediate checkpoint %s", ckpt.folder)
        return ckpt.key, ckpt.folder
    with FileLock(str(ckpt.folder) + ".lock"):
        problem = checkpoint_problem(ckpt.folder)
        if problem is None:  # another job finished it while we waited
            log.info("reusing intermediate checkpoint %s (trained by a parallel job)", ckpt.folder)
            return ckpt.key, ckpt.folder
        if ckpt.folder.exists():
            log.warning("intermediate checkpoint %s cannot be used (%s): training it again", ckpt.folder, problem)
        refuse_repeat_divergence(ckpt)
        train_and_publish(cfg, ckpt, tokenizer, encoder_source)
    return ckpt.key, ckpt.folder
