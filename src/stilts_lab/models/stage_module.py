"""One LightningModule for every stage and head kind: AdamW with linear warmup and decay, clipping and a
non-finite guard that keep the hot path free of host syncs, dev metrics each epoch, the best dev score so
far, and train throughput timed with the device synchronized.

One training step, in the order Lightning runs it (what waits for the device is marked SYNC):
  1. the DataLoader's batch (collated to a plain dict: data/batching.py) is copied to the device
     non-blocking (pinned memory on a GPU);
  2. on_train_batch_start: a compiled stage notes a new input shape (its step is timed as
     compile_seconds: SYNC, only on such steps);
  3. training_step: forward and loss; StepGuard.watch_loss folds "is the loss finite" into a flag on
     the device; the loss is logged detached, not on the progress bar (no .item());
  4. backward (Lightning, under the trainer's precision: bf16 autocast where the CPU has it);
  5. on_before_optimizer_step: StepGuard.before_step takes the gradients' total norm, clips with
     it and folds "is the norm finite" into the same flag, all on the device; a fused AdamW reads
     the flag as found_inf and skips a bad update itself;
  6. optimizer.step (fused or foreach AdamW: models/optim.py) and the scheduler's step;
  7. on_train_batch_end: counts the examples; every check_finite_every steps reads the flag
     (SYNC: the only one in the loop) and stops the trial as diverged if it tripped.
Each epoch start and end synchronizes once for the timer, and the flag is read again before every
dev pass, so a diverged stage is never scored. Dev passes (validation_step) update torchmetrics on
the device; compute() at the epoch's end is one SYNC per epoch."""
from __future__ import annotations

import math
import time

import lightning as L
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from stilts_lab.models.metrics import build_metrics
from stilts_lab.models.optim import StepGuard, adamw, fused_supported

# The transformers head each task kind puts on the encoder. Regression is a one-output
# sequence-classification head (problem_type="regression").
HEADS = {"classification": AutoModelForSequenceClassification,
         "regression": AutoModelForSequenceClassification,
         "multiple_choice": AutoModelForMultipleChoice}


def synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without this a timer stops when work is queued, not done
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageModule(L.LightningModule):
    def __init__(self, model, *, kind: str, metrics: list[str], num_labels: int, lr: float, warmup_ratio: float,
                 weight_decay: float, gradient_clip_val: float | None = 1.0, fused: bool | None = None,
                 check_finite_every: int = 10, compiled: bool = False):
        super().__init__()
        self.save_hyperparameters(ignore=["model"], logger=False)
        # from_pretrained returns eval mode, and Lightning keeps each submodule's mode: without
        # this, dropout would stay off for the whole fine-tuning run
        self.model = model.train()
        self.metric_names = list(metrics)
        self.dev_metrics = build_metrics(self.metric_names, num_labels)
        self.dev_history: list[dict[str, float]] = []
        self.guard = StepGuard(gradient_clip_val)
        self.diverged = False
        self.train_seconds, self.train_examples = 0.0, 0
        self.epoch_seconds: list[float] = []
        self._epoch_start: float | None = None
        # compiled: a train step meeting an input shape not seen before compiles first; such steps are
        # timed apart (compile_seconds) and left out of train_seconds and train_examples
        self.compile_seconds, self.compiled_shapes = 0.0, set()
        self._compile_start: float | None = None

    @property
    def main_metric(self) -> str:
        return self.metric_names[0]

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        if self.hparams.kind == "regression":
            return logits.squeeze(-1)  # one output: the score itself
        return logits.argmax(-1)

    # --- training: nothing here waits for the device -------------------------------------------
    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.guard.watch_loss(loss)
        # not on the progress bar: showing it means a .item() (a host sync) at every refresh
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.guard.before_step(optimizer, self._trainable)

    def on_train_batch_start(self, batch, batch_idx):
        shape = tuple(batch["input_ids"].shape)
        if self.hparams.compiled and shape not in self.compiled_shapes:
            self.compiled_shapes.add(shape)
            synchronize(self.device)
            self._compile_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self._compile_start is not None:
            synchronize(self.device)
            self.compile_seconds += time.perf_counter() - self._compile_start
            self._compile_start = None
        else:
            self.train_examples += int(batch["labels"].shape[0])
        if (batch_idx + 1) % self.hparams.check_finite_every == 0:
            self._stop_if_nonfinite()

    def _stop_if_nonfinite(self) -> None:
        # Steps after the first non-finite one were skipped on the device; stop and record it.
        if not self.diverged and self.guard.tripped():
            self.diverged = True
            self.trainer.should_stop = True

    # --- honest timing: train epochs only, device synchronized at both ends ----------------------
    def on_train_epoch_start(self):
        synchronize(self.device)
        self._epoch_start, self._epoch_compile_start = time.perf_counter(), self.compile_seconds

    def _stop_epoch_timer(self) -> None:
        if self._epoch_start is None:
            return
        synchronize(self.device)
        seconds = time.perf_counter() - self._epoch_start - (self.compile_seconds - self._epoch_compile_start)
        self._epoch_start = None
        self.epoch_seconds.append(seconds)
        self.train_seconds += seconds

    def on_validation_start(self):
        if not self.trainer.sanity_checking:
            self._stop_epoch_timer()  # dev evaluation is not training time
            self._stop_if_nonfinite()

    def on_train_epoch_end(self):
        self._stop_epoch_timer()  # epochs without a dev pass
        self._stop_if_nonfinite()

    # --- dev metrics -----------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        if self.diverged:  # Lightning still runs the epoch's dev pass after should_stop: nothing to score
            return
        labels = batch.pop("labels")
        logits = self.model(**batch).logits
        self.dev_metrics.update(self.predictions(logits.float()), labels)

    def on_validation_epoch_end(self):
        if self.diverged:  # weights after a non-finite step are not a result: never scored
            self.dev_metrics.reset()
            return
        scores = {k: float(v) for k, v in self.dev_metrics.compute().items()}
        self.dev_metrics.reset()
        scores = {k: (v if math.isfinite(v) else 0.0) for k, v in scores.items()}
        if self.trainer.sanity_checking:
            return
        self.dev_history.append(scores)
        self.log_dict({f"dev_{k}": v for k, v in scores.items()}, prog_bar=True)

    @property
    def best_dev(self) -> float | None:
        return max((h[self.main_metric] for h in self.dev_history), default=None)

    def configure_optimizers(self):
        fused = self.hparams.fused
        if fused is None:
            fused = fused_supported(self.device)
        optimizer = adamw(self.model, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=fused)
        self._trainable = [p for group in optimizer.param_groups for p in group["params"]]  # listed once, not per step
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * self.hparams.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
