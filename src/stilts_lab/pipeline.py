"""One trial: [intermediate stage] -> target stage -> metrics.json.

The intermediate stage is cached by a key over everything that determines it, trained under a file
lock (parallel sweep jobs train it once) into a temp folder that is renamed into place only when
complete, so a crash never leaves a checkpoint that looks finished. A stage that diverges is
recorded next to the cache, never saved as a checkpoint: the trials of the same command that need
it fail with a clear error, and a later command tries again."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from stilts_lab.checks import check_config, check_device, check_max_length
from stilts_lab.data.task_files import task_files
from stilts_lab.environment import device_info, versions
from stilts_lab.errors import DivergedError
from stilts_lab.identity import cached_file_sha256, config_hash, data_hashes, intermediate_key
from stilts_lab.intermediate_stage import COMPLETE_FILE, diverged_message, train_into
from stilts_lab.memory import run_isolated
from stilts_lab.models.encoder import load_tokenizer, resolve_pretrained, resolve_tokenizer
from stilts_lab.resume import finished_trial, sweep_root
from stilts_lab.results import METRICS_FILE, read_metrics, run_id, write_json_atomic
from stilts_lab.stage import stage_settings, train_stage

log = logging.getLogger(__name__)
SPLITS_FILE = "splits.json"           # beside metrics.json: the source rows each stage read
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


def intermediate_checkpoint(cfg: DictConfig, tokenizer, encoder_source: str) -> tuple[str, Path]:
    realfake_file = None
    if cfg.intermediate.format == "realfake":
        from stilts_lab.synth.realfake import build_from_config
        from stilts_lab.synth.realfake import EXAMPLES_FILE
        realfake_file = build_from_config(cfg) / EXAMPLES_FILE  # cached by its own key; cheap when built
    key = intermediate_key(cfg, intermediate_data_parts(cfg, realfake_file))
    name = cfg.intermediate.name
    root = Path(abspath(cfg.paths.cache_dir)) / "intermediate"
    final = root / f"{name}-{key}"
    root.mkdir(parents=True, exist_ok=True)
    if checkpoint_problem(final) is None:
        log.info("reusing intermediate checkpoint %s", final)
        return key, final
    with FileLock(str(final) + ".lock"):
        problem = checkpoint_problem(final)
        if problem is None:  # another job finished it while we waited
            log.info("reusing intermediate checkpoint %s (trained by a parallel job)", final)
            return key, final
        if final.exists():
            log.warning("intermediate checkpoint %s cannot be used (%s): training it again", final, problem)
        record = root / f"{final.name}{DIVERGED_SUFFIX}"
        earlier = read_metrics(record) if record.is_file() else None
        if earlier is not None and earlier.get("run_id") == run_id():  # this command already tried
            raise DivergedError(diverged_message(name, key, record, "earlier in this command"))
        if earlier is not None:
            log.warning("intermediate stage %s diverged in an earlier command (%s); trying again", name, record)
        # Holding the lock, no one else writes this key: temp folders left by killed jobs are garbage.
        for stale in root.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{final.name}.tmp-{os.getpid()}"
        log.info("training intermediate stage %s -> %s", name, final)
        stage = dict(
            task=OmegaConf.to_container(cfg.intermediate, resolve=True), encoder_source=encoder_source,
            settings=stage_settings(cfg, "intermediate"),
            # one carve per file for both stages: under the intermediate's own seed, a task sharing
            # the target's file (hellaswag_p -> hellaswag) would train on the target's dev rows
            trainer_cfg=OmegaConf.to_container(cfg.trainer, resolve=True), seed=int(cfg.intermediate.seed),
            split_seed=int(cfg.data.split_seed), data_dir=abspath(cfg.paths.data_dir),
            cache_dir=abspath(cfg.paths.cache_dir), log_dir=output_dir(cfg) / "logs" / "intermediate",
            logger_cfg=OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else None,
            metrics_file=output_dir(cfg) / METRICS_FILE, random_init=bool(cfg.model.random_init),
            realfake_file=realfake_file, num_workers=int(cfg.data.num_workers))
        kwargs = dict(key=key, record=record, run_id=run_id(), tokenizer=tokenizer, stage=stage)
        # In a child, the heap glibc keeps after the stage (~0.6 GB in the default run) leaves with it.
        info = (run_isolated(train_into, tmp, **kwargs) if cfg.trainer.get("isolate_intermediate")
                else train_into(tmp, **kwargs))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        record.unlink(missing_ok=True)
        log.info("intermediate %s: best dev %s %.4f", name, info["metric_name"], info["best_dev_metric"] or 0)
    return key, final


def trial_splits(checkpoint: dict | None, target_splits: dict) -> dict:
    """splits.json: for each stage and split, the source file and its 1-based data lines, so that
    anyone can check which rows a trial was trained and scored on. The intermediate stage's come from
    its checkpoint's stage_metrics.json (a reused checkpoint was trained by another trial)."""
    splits = {"target": target_splits}
    if checkpoint is not None:
        stage = read_metrics(Path(checkpoint["path"]) / COMPLETE_FILE) or {}
        splits = {"intermediate": stage.get("splits"), **splits}
    return splits


def initial_metrics(cfg: DictConfig) -> dict:
    """metrics.json before training: what the trial is, marked failed until it finishes."""
    # .get and no int(): a bad value must reach check_config (one error line), not fail here
    return {
        "config_hash": config_hash(cfg), "model": cfg.model.get("name"), "intermediate": cfg.intermediate.get("name"),
        "target": cfg.target.get("name"), "seed": cfg.get("seed"), "run_id": run_id(),
        "data_files": data_hashes(cfg),  # sha256 of each data file read, by role: part of config_hash
        "hparams": {"lr": cfg.optim.lr, "batch_size": cfg.data.batch_size, "warmup_ratio": cfg.optim.warmup_ratio,
                    "max_epochs": cfg.trainer.max_epochs, "weight_decay": cfg.optim.weight_decay,
                    "train_size": cfg.target.train_size, "eval_size": cfg.target.eval_size,
                    "max_length": cfg.target.get("max_length")},
        "metric_name": None, "dev_metric_per_epoch": [], "dev_metrics_per_epoch": [],
        "best_dev_metric": None, "last_dev_metric": None, "trivial_baseline": None,
        "train_seconds": None, "examples_per_second": None, "intermediate_checkpoint": None,
        "split": None, "status": "failed", "error": None,
        "config": OmegaConf.to_container(cfg, resolve=True), "versions": versions(), "device": device_info(cfg),
    }


def reuse_finished(cfg: DictConfig, metrics: dict, out: Path) -> dict | None:
    """A finished trial of the same config_hash under this sweep (resume): its metrics, copied here."""
    done = finished_trial(metrics["config_hash"], sweep_root(out)) if cfg.get("resume", True) else None
    if not done:
        return None
    path, prior = done
    log.info("skipping finished trial %s: %s already holds its result (status %s)",
             metrics["config_hash"], path, prior["status"])
    if path.resolve() != (out / METRICS_FILE).resolve():
        write_json_atomic(out / METRICS_FILE, prior | {"reused_from": str(path)})
    return prior


def train_trial(cfg: DictConfig, metrics: dict, out: Path):
    """Check, then [intermediate stage ->] target stage; the target stage's StageResult."""
    check_config(cfg)
    check_device(cfg)
    source = resolve_pretrained(cfg.model)
    tokenizer = load_tokenizer(resolve_tokenizer(cfg.model))
    check_max_length(cfg.target, tokenizer, "target")
    encoder_source, random_init = source, bool(cfg.model.random_init)
    if cfg.intermediate.name != "none":
        check_max_length(cfg.intermediate, tokenizer, "intermediate")
        key, path = intermediate_checkpoint(cfg, tokenizer, source)
        metrics["intermediate_checkpoint"] = {"key": key, "path": str(path)}
        encoder_source, random_init = str(path), False
    realfake_file = None
    if cfg.target.get("format") == "realfake":  # a built set as the target task, cached by its own key
        from stilts_lab.synth.realfake import EXAMPLES_FILE, build_from_config
        realfake_file = build_from_config(cfg, role="target") / EXAMPLES_FILE
    return train_stage(
        task=OmegaConf.to_container(cfg.target, resolve=True), encoder_source=encoder_source,
        tokenizer=tokenizer, settings=stage_settings(cfg, "target"),
        trainer_cfg=cfg.trainer, seed=int(cfg.seed), split_seed=int(cfg.data.split_seed),
        data_dir=abspath(cfg.paths.data_dir), cache_dir=abspath(cfg.paths.cache_dir),
        log_dir=out / "logs" / "target", logger_cfg=cfg.get("logger"), metrics_file=out / METRICS_FILE,
        random_init=random_init, realfake_file=realfake_file, num_workers=int(cfg.data.num_workers))


def score(metrics: dict, result, cfg: DictConfig) -> None:
    """Fill metrics with the target stage's result: its dev metric per epoch, the trivial baseline,
    timings, the split, and the status (diverged: non-finite, or never above the trivial baseline)."""
    m = result.module
    per_epoch = [h[m.main_metric] for h in m.dev_history]
    diverged = m.diverged or not per_epoch or max(per_epoch) <= result.baseline
    metrics.update({
        "metric_name": m.main_metric, "dev_metric_per_epoch": per_epoch, "dev_metrics_per_epoch": m.dev_history,
        "best_dev_metric": max(per_epoch) if per_epoch else None, "last_dev_metric": per_epoch[-1] if per_epoch else None,
        "trivial_baseline": result.baseline, "train_seconds": round(m.train_seconds, 3),
        "fit_seconds": round(result.fit_seconds, 3),
        # compiled: train steps that met a new input shape (each compiles first), not in train_seconds
        "compile_seconds": round(m.compile_seconds, 3),
        # train epochs only, timed with the device synchronized (models/stage_module.py)
        "examples_per_second": round(m.train_examples / m.train_seconds, 2) if m.train_seconds else None,
        "train_seconds_per_epoch": [round(s, 3) for s in m.epoch_seconds], "device": device_info(cfg),
        "split": {"train": result.data.origins["train"], "eval": result.data.origins["eval"],
                  "carved": result.data.carved, "train_examples": len(result.data.train_set),
                  "eval_examples": len(result.data.eval_set)},
        "status": "diverged" if diverged else "ok",
    })


def run(cfg: DictConfig) -> dict:
    """Run one trial and write metrics.json (and splits.json) into its output dir; returns the metrics.
    A failure still writes metrics.json, saying failed and why, before it propagates."""
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    metrics = initial_metrics(cfg)
    prior = reuse_finished(cfg, metrics, out)
    if prior is not None:
        return prior
    try:
        result = train_trial(cfg, metrics, out)
    except BaseException as e:
        metrics["error"] = f"{type(e).__name__}: {e}"
        write_json_atomic(out / METRICS_FILE, metrics)
        raise
    score(metrics, result, cfg)
    m = result.module
    write_json_atomic(out / SPLITS_FILE, trial_splits(metrics["intermediate_checkpoint"], result.data.splits))
    write_json_atomic(out / METRICS_FILE, metrics)
    # the one line a sweep prints per finished trial: status, score, time, where the result is
    log.info("trial finished: %s -> %s, status %s, best dev %s %.4f (trivial baseline %.4f), target stage %.1f s, "
             "metrics in %s", cfg.intermediate.name, cfg.target.name, metrics["status"], m.main_metric,
             metrics["best_dev_metric"] or 0, result.baseline, result.fit_seconds, out / METRICS_FILE)
    return metrics
