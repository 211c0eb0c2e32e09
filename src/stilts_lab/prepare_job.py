"""One job of the prepare phase (prepare.py launches it, one per intermediate checkpoint):

    python -m stilts_lab.prepare_job -m +prepare.plan=PLAN.json +prepare.index=0,1,... [launcher overrides]

A Hydra app on the package's config tree, so that every launcher the trials use (local, joblib,
SLURM) runs these jobs too. Each composes the trial config the plan lists under its index and runs
checkpoints.intermediate_checkpoint: it builds the real-fake set where there is one and trains the
checkpoint (a file lock still guards it, should two commands prepare the same key)."""
from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("stilts_lab.prepare")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from stilts_lab.__main__ import _own_gpu_per_worker
    job = json.loads(Path(cfg.prepare.plan).read_text(encoding="utf-8"))[int(cfg.prepare.index)]
    trial = compose(config_name="config", overrides=job["overrides"])
    OmegaConf.update(trial, "output_dir", HydraConfig.get().runtime.output_dir, force_add=True)
    _own_gpu_per_worker(trial)
    from stilts_lab.checkpoints import intermediate_checkpoint
    from stilts_lab.checks import check_config, check_device, check_max_length
    from stilts_lab.models.encoder import load_tokenizer, resolve_pretrained, resolve_tokenizer
    check_config(trial)
    check_device(trial)
    tokenizer = load_tokenizer(resolve_tokenizer(trial.model))
    check_max_length(trial.intermediate, tokenizer, "intermediate")
    key, folder = intermediate_checkpoint(trial, tokenizer, resolve_pretrained(trial.model))
    if key != job["key"]:   # the plan's key, computed without training, must be what was trained
        raise RuntimeError(f"prepared {folder}, but the plan expected key {job['key']}")
    log.info("prepared %s", folder)


if __name__ == "__main__":
    os.environ.setdefault("STILTS_RUN_ID", uuid.uuid4().hex[:12])
    sys.exit(main())
