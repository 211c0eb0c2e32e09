"""One trial: [intermediate stage] -> target stage -> metrics.json.

The intermediate checkpoint comes from checkpoints.py (cached by key, trained once under a lock)."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stilts_lab.checkpoints import abspath, expected_key, intermediate_checkpoint, output_dir
from stilts_lab.checks import check_config, check_device, check_max_length
from stilts_lab.environment import device_info, versions
from stilts_lab.identity import config_hash, data_hashes
from stilts_lab.intermediate_stage import COMPLETE_FILE
from stilts_lab.models.encoder import load_tokenizer, resolve_pretrained, resolve_tokenizer
from stilts_lab.resume import finished_trial, sweep_root
from stilts_lab.results import METRICS_FILE, read_metrics, run_id, write_json_atomic
from stilts_lab.stage import stage_settings, train_stage

log = logging.getLogger(__name__)
SPLITS_FILE = "splits.json"           # beside metrics.json: the source rows each stage read


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
    """metrics.json before training: what the trial is, marked failed until it finishes. Only what
    cannot fail (a bad value must still leave this record, saying failed and why): config_hash and the
    device come from identify()."""
    # .get and no int(): a bad value must reach check_config (one error line), not fail here
    return {
        "config_hash": None, "model": cfg.model.get("name"), "intermediate": cfg.intermediate.get("name"),
        "target": cfg.target.get("name"), "seed": cfg.get("seed"), "run_id": run_id(), "data_files": None,
        "hparams": {"lr": cfg.optim.get("lr"), "batch_size": cfg.data.get("batch_size"),
                    "warmup_ratio": cfg.optim.get("warmup_ratio"), "max_epochs": cfg.trainer.get("max_epochs"),
                    "weight_decay": cfg.optim.get("weight_decay"), "train_size": cfg.target.get("train_size"),
                    "eval_size": cfg.target.get("eval_size"), "max_length": cfg.target.get("max_length")},
        "metric_name": None, "dev_metric_per_epoch": [], "dev_metrics_per_epoch": [],
        "best_dev_metric": None, "last_dev_metric": None, "trivial_baseline": None,
        "train_seconds": None, "examples_per_second": None, "intermediate_checkpoint": None,
        # each stage's training method (intermediate/method, target/method; absent in the config: full)
        "method": {"intermediate": None if cfg.intermediate.get("name") in (None, "none")
                   else (cfg.intermediate.get("method") or {}).get("name", "full"),
                   "target": (cfg.target.get("method") or {}).get("name", "full")},
        "trainable_parameters": None, "total_parameters": None,
        "split": None, "status": "failed", "error": None,
        # UTC, so that a preregistration's commit can be shown to precede every trial
        "started_at": utc_now(), "finished_at": None,
        "config": OmegaConf.to_container(cfg, resolve=True), "versions": None, "device": None,
    }


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def identify(cfg: DictConfig, metrics: dict) -> None:
    """What may fail in describing a checked trial: its intermediate checkpoint's key (config_hash),
    the library versions and the device."""
    metrics["config_hash"] = config_hash(cfg, expected_key(cfg))
    metrics["versions"] = versions()
    metrics["device"] = device_info(cfg)


def reuse_finished(cfg: DictConfig, metrics: dict, out: Path) -> dict | None:
    """A finished trial of the same config_hash under this sweep (resume): its metrics, copied here."""
    done = finished_trial(metrics["config_hash"], sweep_root(out)) if cfg.get("resume", True) else None
    if not done:
        return None
    path, prior = done
    log.info("skipping finished trial %s: %s already holds its result (status %s)",
             metrics["config_hash"], path, prior["status"])
    # a carried results.csv row stays where it is, read by the report; a metrics.json is copied here
    if path.name == METRICS_FILE and path.resolve() != (out / METRICS_FILE).resolve():
        write_json_atomic(out / METRICS_FILE, prior | {"reused_from": str(path)})
    return prior


def train_trial(cfg: DictConfig, metrics: dict, out: Path):
    """[intermediate stage ->] target stage (run() has checked the config); the target stage's StageResult."""
    check_device(cfg)
    source = resolve_pretrained(cfg.model)
    tokenizer = load_tokenizer(resolve_tokenizer(cfg.model))
    check_max_length(cfg.target, tokenizer, "target")
    encoder_source, random_init = source, bool(cfg.model.random_init)
    if cfg.intermediate.name != "none":
        check_max_length(cfg.intermediate, tokenizer, "intermediate")
        key, path = intermediate_checkpoint(cfg, tokenizer, source)
        stage = read_metrics(Path(path) / COMPLETE_FILE) or {}
        # what the intermediate stage saved (the whole encoder, a LoRA adapter or bias tensors) and trained
        metrics["intermediate_checkpoint"] = {"key": key, "path": str(path), "method": stage.get("method", "full"),
                                              "bytes": sum((stage.get("files") or {}).values()),
                                              "trainable_parameters": stage.get("trainable_parameters")}
        encoder_source, random_init = str(path), False
    realfake_file = None
    if cfg.target.get("format") == "realfake":  # a built set as the target task, cached by its own key
        from stilts_lab.synth.realfake import EXAMPLES_FILE, build_from_config
        realfake_file = build_from_config(cfg, role="target") / EXAMPLES_FILE
    return train_stage(
        task=OmegaConf.to_container(cfg.target, resolve=True), encoder_source=encoder_source,
        tokenizer=tokenizer, settings=stage_settings(cfg, "target"),
        trainer_cfg=cfg.trainer, seed=trial_seed(cfg), split_seed=int(cfg.data.split_seed),
        data_dir=abspath(cfg.paths.data_dir), cache_dir=abspath(cfg.paths.cache_dir),
        log_dir=out / "logs" / "target", logger_cfg=cfg.get("logger"), metrics_file=out / METRICS_FILE,
        random_init=random_init, realfake_file=realfake_file, num_workers=int(cfg.data.num_workers))


def trial_seed(cfg: DictConfig) -> int:
    """The target stage's seed: the grid's seed, moved far off it for a replicate (another random
    stream in the same cell; the data subsets follow data.split_seed and stay the same)."""
    replicate = int(cfg.get("replicate") or 0)
    return int(cfg.seed) + 1_000_003 * replicate


def score(metrics: dict, result, cfg: DictConfig) -> None:
    """Fill metrics with the target stage's result: its dev metric per epoch, the trivial baseline,
    timings, the split, and the status (diverged: non-finite, or never above the trivial baseline)."""
    m = result.module
    per_epoch = [h[m.main_metric] for h in m.dev_history]
    # the finished stage's scores first: should anything below fail, metrics.json still holds them
    metrics.update(metric_name=m.main_metric, dev_metric_per_epoch=per_epoch, dev_metrics_per_epoch=m.dev_history,
                   best_dev_metric=max(per_epoch) if per_epoch else None)
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
        **(result.parameters or {}),  # the target stage's trainable_parameters and total_parameters
        "split": {"train": result.data.origins["train"], "eval": result.data.origins["eval"],
                  "carved": result.data.carved, "train_examples": len(result.data.train_set),
                  "eval_examples": len(result.data.eval_set)},
        "status": "diverged" if diverged else "ok",
    })


def run(cfg: DictConfig) -> dict:
    """Run one trial and write metrics.json (and splits.json) into its output dir; returns the metrics.
    Any failure, from describing the trial to scoring it, still writes metrics.json, saying failed and
    why (with whatever the stages finished), before it propagates: a sweep never loses a trial silently."""
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    metrics = initial_metrics(cfg)
    try:
        metrics["data_files"] = data_hashes(cfg)  # sha256 of each data file read, by role: part of config_hash
        check_config(cfg)   # before identify(): a bad value is one error line, not a crash in hashing
        identify(cfg, metrics)
        prior = reuse_finished(cfg, metrics, out)
        if prior is not None:
            return prior
        result = train_trial(cfg, metrics, out)
        score(metrics, result, cfg)
        write_json_atomic(out / SPLITS_FILE, trial_splits(metrics["intermediate_checkpoint"], result.data.splits))
    except BaseException as e:
        metrics.update(status="failed", error=f"{type(e).__name__}: {e}", finished_at=utc_now())
        if metrics["config_hash"] is None:   # the checkpoint key could not be known: the hash without it
            try:
                metrics["config_hash"] = config_hash(cfg)
            except Exception:
                pass
        write_json_atomic(out / METRICS_FILE, metrics)
        raise
    metrics["finished_at"] = utc_now()
    write_json_atomic(out / METRICS_FILE, metrics)
    m = result.module
    # the one line a sweep prints per finished trial: status, score, time, where the result is
    log.info("trial finished: %s -> %s, status %s, best dev %s %.4f (trivial baseline %.4f), target stage %.1f s, "
             "metrics in %s", cfg.intermediate.name, cfg.target.name, metrics["status"], m.main_metric,
             metrics["best_dev_metric"] or 0, result.baseline, result.fit_seconds, out / METRICS_FILE)
    return metrics
