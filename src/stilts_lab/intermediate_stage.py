"""Training the intermediate stage into a temp folder: the part of checkpoints.intermediate_checkpoint that may
run in a child process (trainer.isolate_intermediate), so that its heap leaves with the child and the target
stage that follows in the parent starts from a clean one (docs/performance.md, "Memory of the default run").
Everything it takes and returns is plain data: a child gets no Hydra context."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stilts_lab.errors import DivergedError
from stilts_lab.results import write_json_atomic
from stilts_lab.stage import train_stage

COMPLETE_FILE = "stage_metrics.json"  # written last inside the temp folder, before the rename


def finite_weights(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def diverged_message(name: str, key: str, record: Path, when: str) -> str:
    return (f"intermediate stage {name} (key {key}) diverged {when}: its training loss or weights went "
            f"non-finite, so no checkpoint was saved (record: {record}). Trials that need it fail; lower "
            f"intermediate.lr (or clip harder: trainer.gradient_clip_val), or run the command again to retry")


def train_into(tmp: Path, *, key: str, record: Path, run_id: str, tokenizer, stage: dict) -> dict:
    """train_stage(**stage) (trainer_cfg and logger_cfg as plain dicts), then the encoder, tokenizer,
    stage.yaml and COMPLETE_FILE into `tmp`; returns the stage's record. A diverged stage writes `record`
    (with the command's run_id) instead and raises DivergedError."""
    task = stage["task"]
    stage = dict(stage, trainer_cfg=OmegaConf.create(stage["trainer_cfg"]))
    base_model = stage.pop("base_model")  # what a lora / bitfit checkpoint names as its base
    result = train_stage(tokenizer=tokenizer, **stage)
    module, realfake_file = result.module, stage.get("realfake_file")
    info = {
        "key": key, "task": task["name"], "dev_metric_per_epoch": [h[module.main_metric] for h in module.dev_history],
        "metric_name": module.main_metric, "best_dev_metric": module.best_dev,
        "trivial_baseline": result.baseline, "diverged": module.diverged,
        "train_examples": len(result.data.train_set), "eval_examples": len(result.data.eval_set),
        "fit_seconds": result.fit_seconds, "realfake_file": str(realfake_file) if realfake_file else None,
        "splits": result.data.splits}
    finite = finite_weights(module.model)
    if module.diverged or not finite:
        write_json_atomic(record, info | {"diverged": True, "nonfinite_loss": bool(module.diverged),
                                          "finite_weights": finite, "run_id": run_id})
        shutil.rmtree(tmp, ignore_errors=True)
        raise DivergedError(diverged_message(task["name"], key, record, "while training"))
    # Only the encoder travels on: the target stage puts a fresh head of its own kind on it. Under
    # method full, the whole encoder; lora, its adapter; bitfit, its bias tensors (models/methods.py).
    result.method.save(module.model, tmp, base_encoder=base_model)
    tokenizer.save_pretrained(tmp)
    OmegaConf.save(OmegaConf.create(task), tmp / "stage.yaml")
    info["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
    info.update(method=result.method.name, checkpoint_bytes=sum(info["files"].values()), **result.parameters)
    write_json_atomic(tmp / COMPLETE_FILE, info)
    return info
