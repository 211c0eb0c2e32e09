"""Train one stage (intermediate or target): data, head, Lightning Trainer, dev metric per epoch."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import lightning as L

from stilts_lab.data.datamodule import TaskDataModule
from stilts_lab.devices import uses_gpu
from stilts_lab.memory import release_freed_memory
from stilts_lab.process_settings import stage_settings_scope
from stilts_lab.errors import ConfigError
from stilts_lab.models.encoder import load_head_model
from stilts_lab.models.methods import (AppliedMethod, apply_handoff, apply_method, base_source, method_name,
                                     parameter_counts, read_handoff)
from stilts_lab.models.metrics import trivial_baseline
from stilts_lab.models.stage_module import HEADS, StageModule
from stilts_lab.trackers import build_logger

log = logging.getLogger(__name__)
# With torch.compile on, every new input shape compiles again (and under reduce-overhead records a
# CUDA graph of its own): lengths are padded to a multiple of this, and the partial train batch is
# dropped, so that a stage sees at most max_length / 32 train shapes and one more at evaluation.
COMPILE_PAD_MULTIPLE = 32


@dataclass
class StageSettings:
    lr: float
    batch_size: int
    warmup_ratio: float
    weight_decay: float
    max_epochs: int
    max_steps: int = -1


def stage_settings(cfg, role: str) -> StageSettings:
    """A stage's optimisation settings: the intermediate stage reads its own block (intermediate.lr,
    .batch_size, ..., .max_steps); the target stage reads optim, data.batch_size and trainer.max_epochs."""
    if role == "intermediate":
        b = cfg.intermediate
        return StageSettings(lr=float(b.lr), batch_size=int(b.batch_size), warmup_ratio=float(b.warmup_ratio),
                             weight_decay=float(b.weight_decay), max_epochs=int(b.max_epochs), max_steps=int(b.max_steps))
    return StageSettings(lr=float(cfg.optim.lr), batch_size=int(cfg.data.batch_size),
                         warmup_ratio=float(cfg.optim.warmup_ratio), weight_decay=float(cfg.optim.weight_decay),
                         max_epochs=int(cfg.trainer.max_epochs))


class ReleaseFreedMemory(L.Callback):
    """After each dev pass, and every n training steps when asked, the heap's free pages go back to the OS
    (memory.release_freed_memory): training frees blocks of a new size at every step, which glibc keeps.
    Not every step by default: the next step faults the released pages in again, which made the step
    ~17% slower than a bare loop's (bench/step_profile.py, docs/performance.md)."""

    def __init__(self, every_n_steps: int | None):
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_n_steps and (batch_idx + 1) % self.every_n_steps == 0:
            release_freed_memory()

    def on_validation_end(self, trainer, pl_module):
        release_freed_memory()


@dataclass
class StageResult:
    module: StageModule
    data: TaskDataModule
    baseline: float
    fit_seconds: float
    method: AppliedMethod | None = None   # the stage's training method (models/methods.py), as applied
    parameters: dict | None = None        # trainable_parameters, total_parameters


def train_stage(*, task: Mapping, encoder_source: str, tokenizer, settings: StageSettings, trainer_cfg: Mapping,
                seed: int, split_seed: int, data_dir, cache_dir, log_dir: Path, random_init: bool = False,
                realfake_file: Path | None = None, num_workers: int = 0, logger_cfg: Mapping | None = None,
                metrics_file: Path | None = None) -> StageResult:
    L.seed_everything(seed, workers=True, verbose=False)
    trim_every = trainer_cfg.get("malloc_trim_every_n_steps")
    on_gpu = uses_gpu(trainer_cfg.get("accelerator"))
    with stage_settings_scope(trainer_cfg, on_gpu):  # restored for whatever runs next in this process
        compiled = bool(trainer_cfg.get("compile"))
        method = task.get("method")  # the stage's training method; absent: full (models/methods.py)
        if method_name(method) != "full" and random_init:
            raise ConfigError(f"{method_name(method)} trains part of a random-init encoder, whose other weights "
                              "no checkpoint keeps: use method full with model.random_init=true")
        task = {k: v for k, v in task.items() if k != "method"}  # not part of the task's data or tokenization
        data = stage_data(task, tokenizer, batch_size=settings.batch_size, trainer_cfg=trainer_cfg, seed=seed,
                          split_seed=split_seed, data_dir=data_dir, cache_dir=cache_dir, realfake_file=realfake_file,
                          num_workers=num_workers)
        kind = task["kind"]
        # a lora / bitfit intermediate checkpoint holds only what its stage trained: the base encoder it
        # applies to comes first, then the checkpoint on it (a LoRA adapter merged)
        handoff = read_handoff(encoder_source)
        model = load_head_model(HEADS[kind], base_source(handoff) if handoff else encoder_source,
                                random_init=random_init, attn_implementation="sdpa",
                                head=head_config(kind, data.num_labels))
        if handoff:
            apply_handoff(model, encoder_source, handoff)
        applied = apply_method(model, method)  # the head trains in full under every method
        parameters = parameter_counts(model)
        log.info("%s stage method %s: %d of %d parameters train", task["name"], applied.name,
                 parameters["trainable_parameters"], parameters["total_parameters"])
        if compiled:
            # in place: the state dict keeps its keys, so save_pretrained still writes a plain checkpoint
            model.compile(mode=None if trainer_cfg["compile"] in ("default", True) else trainer_cfg["compile"],
                          backend=trainer_cfg.get("compile_backend") or "inductor")
        module = StageModule(model, kind=kind, metrics=list(task["metrics"]), num_labels=data.num_labels,
                             lr=settings.lr, warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay,
                             gradient_clip_val=clip_value(trainer_cfg), fused=trainer_cfg.get("fused"),
                             check_finite_every=int(trainer_cfg.get("log_every_n_steps") or 10), compiled=compiled)
        # one column read from the Arrow table, not every row decoded
        baseline = trivial_baseline(module.main_metric, list(data.train_set["label"]), list(data.eval_set["label"]),
                                    data.num_labels)
        trainer = L.Trainer(
            accelerator=trainer_cfg["accelerator"], devices=trainer_cfg.get("devices", 1),
            precision=trainer_cfg.get("precision", "32-true"), max_epochs=settings.max_epochs,
            max_steps=settings.max_steps,
            gradient_clip_val=None,  # the module clips itself (models/optim.py says why)
            log_every_n_steps=trainer_cfg.get("log_every_n_steps", 10),
            enable_progress_bar=trainer_cfg.get("enable_progress_bar", True),
            logger=build_logger(logger_cfg, log_dir, metrics_file=metrics_file,  # the `logger` config group
                                hparams=tracked_hparams(task, settings, seed, applied.name, encoder_source)),
            callbacks=[ReleaseFreedMemory(int(trim_every) if trim_every else None)],
            # the best dev score is tracked in the module; target checkpoints would only cost disk
            enable_checkpointing=False, num_sanity_val_steps=0,
            use_distributed_sampler=False,  # keep the length-grouped batches
            enable_model_summary=False,
            profiler=trainer_cfg.get("profiler"),  # null, or Lightning's simple / advanced / pytorch profiler
        )
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        return StageResult(module, data, baseline, time.perf_counter() - start, applied, parameters)


def stage_data(task: Mapping, tokenizer, *, batch_size: int, trainer_cfg: Mapping, seed: int, split_seed: int,
               data_dir, cache_dir, realfake_file: Path | None = None, num_workers: int = 0) -> TaskDataModule:
    """The stage's data, set up and batched as the trainer config asks (padding, eval batch, pinning)."""
    compiled = bool(trainer_cfg.get("compile"))
    pad_to = trainer_cfg.get("pad_to_multiple_of")
    if compiled:
        pad_to = math.lcm(int(pad_to or 1), COMPILE_PAD_MULTIPLE)
    data = TaskDataModule(task, tokenizer, batch_size=batch_size, seed=seed, split_seed=split_seed,
                          data_dir=data_dir, cache_dir=cache_dir, realfake_file=realfake_file,
                          eval_batch_size=trainer_cfg.get("eval_batch_size"), num_workers=num_workers,
                          pin_memory=bool(trainer_cfg.get("pin_memory")) and uses_gpu(trainer_cfg.get("accelerator")),
                          pad_to_multiple_of=pad_to, drop_last=compiled)
    data.setup()
    return data


def tracked_hparams(task: Mapping, settings: StageSettings, seed: int, method: str, encoder_source: str) -> dict:
    """What a tracker's run is compared by: the stage's task, where it started (the pretrained encoder's
    folder or the intermediate checkpoint's, <task>-<key>), its settings, seed and training method."""
    return {"task": task["name"], "start": Path(str(encoder_source)).name, "seed": seed, "method": method,
            **vars(settings)}


def head_config(kind: str, num_labels: int) -> dict:
    """The head's settings, every one of them set for this task. An intermediate checkpoint carries
    the config of the head it was trained with (problem_type, id2label); whatever is left unset here
    travels into the target stage, so a regression checkpoint would put a classification target under
    MSELoss. Order matters: num_labels first (its setter rebuilds id2label), then problem_type."""
    if kind == "multiple_choice":
        return {"num_labels": 1, "problem_type": None}  # one score per choice; the choices are the softmax axis
    return {"num_labels": num_labels,
            "problem_type": "regression" if kind == "regression" else "single_label_classification"}


def clip_value(trainer_cfg: Mapping) -> float | None:
    value = trainer_cfg.get("gradient_clip_val")
    if value is None or float(value) == 0:
        return None  # 0 means no clipping, as in Lightning's own gradient_clip_val
    return float(value)
