"""Experiment trackers from the `logger` config group (csv, tensorboard, mlflow, wandb), as in
lightning-hydra-template: each entry is a Lightning logger that Hydra instantiates. The stage
chooses where it writes, so every stage of a trial logs under that trial's folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from stilts_lab.errors import ConfigError

# Loggers that name their run (MLflow, W&B): left unset, the run is named after the stage folder.
RUN_NAME_ARG = {"MLFlowLogger": "run_name", "WandbLogger": "name"}


def build_logger(logger_cfg: Mapping | None, log_dir: Path, *, metrics_file: Path | None = None,
                 hparams: Mapping | None = None) -> list[Logger]:
    """One Lightning logger per entry of `logger_cfg`, each writing under log_dir/<entry name>.
    `hparams` (the stage's task, starting point, rate, batch, warmup, seed, method...) are logged as
    hyperparameters, so runs compare by them in TensorBoard's HPARAMS tab or MLflow; `metrics_file` (the
    trial's metrics.json) too, so a tracker's run points back at the result file the reports read."""
    if logger_cfg is None:  # a config composed before the logger group existed
        logger_cfg = {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "name": "", "version": ""}}
    if OmegaConf.is_config(logger_cfg):
        logger_cfg = OmegaConf.to_container(logger_cfg, resolve=True)
    loggers = []
    for name, spec in logger_cfg.items():
        if not spec or "_target_" not in spec:
            continue  # logger.<name>=null switches one off
        spec = dict(spec)
        cls_name = str(spec["_target_"]).rsplit(".", 1)[-1]
        run_arg = RUN_NAME_ARG.get(cls_name)
        if run_arg and spec.get(run_arg) is None:
            spec[run_arg] = Path(log_dir).name
        if cls_name == "MLFlowLogger" and not spec.get("tracking_uri"):
            # Offline means MLflow's file store, which MLflow 3 refuses unless opted in (it keeps
            # supporting it, "in maintenance mode"); its database stores need a full mlflow install.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        save_dir = Path(log_dir) / name
        save_dir.mkdir(parents=True, exist_ok=True)
        try:
            logger = instantiate(spec, save_dir=str(save_dir))
        except Exception as e:  # a tracker that is not installed, a bad argument: name the key
            cause = e.__cause__ or e
            raise ConfigError(f"logger.{name}: cannot create {spec['_target_']}: {cause}") from None
        logged = dict(hparams or {})
        if metrics_file is not None:
            logged["metrics_file"] = str(metrics_file)
        if logged:
            logger.log_hyperparams(logged)
        loggers.append(logger)
    return loggers  # empty (every entry null): Lightning logs nothing
