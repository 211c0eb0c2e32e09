"""Train one stage (intermediate or target): data, head, Lightning Trainer, dev metric per epoch."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from stilts_lab.data.datamodule import TaskDataModule
from stilts_lab.models.classification import SequenceClassificationModule
from stilts_lab.models.encoder import load_head_model
from stilts_lab.models.metrics import trivial_baseline
from stilts_lab.models.multiple_choice import MultipleChoiceModule
from stilts_lab.models.stage_module import StageModule

log = logging.getLogger(__name__)


@dataclass
class StageSettings:
    lr: float
    batch_size: int
    warmup_ratio: float
    weight_decay: float
    max_epochs: int
    max_steps: int = -1


@dataclass
class StageResult:
    module: StageModule
    data: TaskDataModule
    baseline: float
    fit_seconds: float


def module_class(kind: str) -> type[StageModule]:
    return MultipleChoiceModule if kind == "multiple_choice" else SequenceClassificationModule


def train_stage(*, task: Mapping, encoder_source: str, tokenizer, settings: StageSettings, trainer_cfg: Mapping,
                seed: int, split_seed: int, data_dir, cache_dir, log_dir: Path, random_init: bool = False,
                realfake_file: Path | None = None, num_workers: int = 0) -> StageResult:
    L.seed_everything(seed, workers=True, verbose=False)
    if trainer_cfg.get("num_threads"):
        torch.set_num_threads(int(trainer_cfg["num_threads"]))
    data = TaskDataModule(task, tokenizer, batch_size=settings.batch_size, seed=seed, split_seed=split_seed,
                          data_dir=data_dir, cache_dir=cache_dir, realfake_file=realfake_file,
                          num_workers=num_workers)
    data.setup()
    kind = task["kind"]
    cls = module_class(kind)
    head_kwargs = {"num_labels": data.num_labels} if kind != "multiple_choice" else {}
    if kind == "regression":
        head_kwargs["problem_type"] = "regression"
    model = load_head_model(cls.auto_cls, encoder_source, random_init=random_init,
                            attn_implementation="sdpa", **head_kwargs)
    module = cls(model, metrics=list(task["metrics"]), num_labels=data.num_labels, lr=settings.lr,
                 warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay)
    baseline = trivial_baseline(module.main_metric, [ex["label"] for ex in data.train_set],
                                [ex["label"] for ex in data.eval_set], data.num_labels)
    if trainer_cfg.get("accelerator") == "gpu":
        torch.backends.cuda.matmul.allow_tf32 = True  # for what stays fp32 under bf16 autocast
    trainer = L.Trainer(
        accelerator=trainer_cfg["accelerator"], devices=trainer_cfg.get("devices", 1),
        precision=trainer_cfg.get("precision", "32-true"), max_epochs=settings.max_epochs,
        max_steps=settings.max_steps, gradient_clip_val=trainer_cfg.get("gradient_clip_val"),
        log_every_n_steps=trainer_cfg.get("log_every_n_steps", 10),
        enable_progress_bar=trainer_cfg.get("enable_progress_bar", True),
        logger=CSVLogger(str(log_dir), name="", version=""),
        # the best dev score is tracked in the module; target checkpoints would only cost disk
        enable_checkpointing=False, num_sanity_val_steps=0,
        use_distributed_sampler=False,  # keep the length-grouped batches
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return StageResult(module, data, baseline, time.perf_counter() - start)
