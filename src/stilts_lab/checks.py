"""Reject impossible hyperparameters before any work starts, naming the config key."""
from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from stilts_lab.data.tasks import check_task
from stilts_lab.errors import ConfigError


def _positive(cfg: DictConfig, key: str, *, allow_none=False, integer=False, allow_minus_one=False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if allow_minus_one and value == -1:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{key}={value!r} is impossible: expected {kind}"
                          + (" or null" if allow_none else "") + (" or -1" if allow_minus_one else ""))


def _fraction(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{key}={value!r} is impossible: expected a fraction in [0, 1)")


def check_config(cfg: DictConfig) -> None:
    _positive(cfg, "optim.lr")
    _fraction(cfg, "optim.warmup_ratio")
    _positive(cfg, "data.batch_size", integer=True)
    _positive(cfg, "trainer.max_epochs", integer=True)
    _positive(cfg, "target.train_size", allow_none=True, integer=True)
    _positive(cfg, "target.eval_size", allow_none=True, integer=True)
    if cfg.target.name == "none":
        raise ConfigError("target=none is not a task: choose a target task, e.g. target=rte")
    check_task(cfg.target, "target")
    if cfg.intermediate.name != "none":
        check_task(cfg.intermediate, "intermediate")
        for key in ("lr", "batch_size", "max_epochs", "eval_size"):
            _positive(cfg, f"intermediate.{key}", integer=key != "lr")
        _fraction(cfg, "intermediate.warmup_ratio")
        _positive(cfg, "intermediate.max_steps", integer=True, allow_minus_one=True)
        _positive(cfg, "intermediate.train_size", allow_none=cfg.intermediate.format != "realfake", integer=True)


def stable_hash(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(cfg: DictConfig) -> str:
    """Identity of a trial: everything that determines its result, not where it runs or writes."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for key in ("paths", "hydra", "resume"):
        resolved.pop(key, None)
    resolved.get("trainer", {}).pop("enable_progress_bar", None)
    return stable_hash(resolved)
