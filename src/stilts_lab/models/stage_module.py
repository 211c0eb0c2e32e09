"""What every stage shares: AdamW with linear warmup and decay, dev metrics each epoch, the best
dev score so far, divergence detection and honest timing. Subclasses choose the head."""
from __future__ import annotations

import math
import time

import lightning as L
import torch
from transformers import get_linear_schedule_with_warmup

from stilts_lab.models.metrics import build_metrics


class StageModule(L.LightningModule):
    auto_cls = None  # set by subclasses: the transformers Auto class of the head

    def __init__(self, model, *, metrics: list[str], num_labels: int, lr: float, warmup_ratio: float,
                 weight_decay: float):
        super().__init__()
        self.save_hyperparameters(ignore=["model"], logger=False)
        # from_pretrained returns eval mode, and Lightning keeps each submodule's mode: without
        # this, dropout would stay off for the whole fine-tuning run
        self.model = model.train()
        self.metric_names = list(metrics)
        self.dev_metrics = build_metrics(self.metric_names, num_labels)
        self.dev_history: list[dict[str, float]] = []
        self.diverged = False
        self.train_seconds, self.train_examples = 0.0, 0
        self._batch_start = 0.0

    @property
    def main_metric(self) -> str:
        return self.metric_names[0]

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        if not torch.isfinite(loss):
            # Stop instead of training on: the trial is recorded as diverged, not silently kept.
            self.diverged = True
            self.trainer.should_stop = True
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_train_batch_start(self, batch, batch_idx):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # forward + backward + optimizer step, without data loading and dev evaluation
        self.train_seconds += time.perf_counter() - self._batch_start
        self.train_examples += int(batch["labels"].shape[0])

    def validation_step(self, batch, batch_idx):
        labels = batch.pop("labels")
        logits = self.model(**batch).logits
        self.dev_metrics.update(self.predictions(logits.float()), labels)

    def on_validation_epoch_end(self):
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
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        params = [
            {"params": [p for n, p in self.model.named_parameters() if not n.endswith(no_decay)],
             "weight_decay": self.hparams.weight_decay},
            {"params": [p for n, p in self.model.named_parameters() if n.endswith(no_decay)],
             "weight_decay": 0.0},
        ]
        # fused AdamW is faster where the kernel exists (CUDA); CPU uses the foreach path
        fused = torch.cuda.is_available() and self.device.type == "cuda"
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, fused=fused)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * self.hparams.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
