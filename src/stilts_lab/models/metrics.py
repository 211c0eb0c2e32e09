"""Dev metrics by name (torchmetrics), and the trivial baseline: the score of a constant predictor,
which tells learning from chance."""
from __future__ import annotations

import math
import warnings
from collections import Counter

import torch
import torchmetrics
from torchmetrics import classification as C
from torchmetrics import regression as R

from stilts_lab.errors import ConfigError


class MatthewsCorrCoef(C.MulticlassMatthewsCorrCoef):
    """MCC with 0 for a constant prediction (or a constant dev set), as GLUE's CoLA scoring and
    scikit-learn define it. torchmetrics' two-class MCC replaces that 0/0 with a smoothed value
    (+-0.28 on a 70/30 split), which would let a trial that collapsed to one class look learned."""

    def compute(self) -> torch.Tensor:
        predicted, present = (self.confmat.sum(0) > 0).sum(), (self.confmat.sum(1) > 0).sum()
        if predicted < 2 or present < 2:
            return torch.zeros((), device=self.confmat.device)
        return super().compute()


def build_metrics(names: list[str], num_labels: int) -> torchmetrics.MetricCollection:
    # multiclass with num_classes=2 is plain accuracy / MCC; "f1" is the positive class's (MRPC).
    # validate_args=False: the input checks call torch.unique on every eval batch (a host sync on a
    # GPU); predictions are argmax indices and labels come from the task's own label map, so the
    # checks could only ever pass.
    factories = {
        "accuracy": lambda: C.MulticlassAccuracy(num_classes=num_labels, average="micro", validate_args=False),
        "mcc": lambda: MatthewsCorrCoef(num_classes=num_labels, validate_args=False),
        "f1": lambda: C.BinaryF1Score(validate_args=False),
        "macro_f1": lambda: C.MulticlassF1Score(num_classes=num_labels, average="macro", validate_args=False),
        "pearson": R.PearsonCorrCoef,
        "spearman": R.SpearmanCorrCoef,
    }
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; known: {sorted(factories)}")
    return torchmetrics.MetricCollection({n: factories[n]() for n in names})


def trivial_baseline(metric: str, train_labels: list, eval_labels: list, num_labels: int) -> float:
    """The dev score of a constant prediction, the line a trial must rise above to have learned
    anything: the training set's majority label (for multiple choice, its most frequent answer
    position), or the mean of its labels for regression (num_labels 1). Scored by the same metric
    as the dev set; an undefined score (the correlation of a constant) counts as 0, as the stage
    records it."""
    if num_labels == 1:
        mean = sum(float(y) for y in train_labels) / len(train_labels)
        preds, target = torch.full((len(eval_labels),), mean), torch.tensor(eval_labels, dtype=torch.float)
    else:
        majority = Counter(train_labels).most_common(1)[0][0]
        preds = torch.full((len(eval_labels),), int(majority), dtype=torch.long)
        target = torch.tensor(eval_labels, dtype=torch.long)
    with warnings.catch_warnings():
        # torchmetrics warns that a constant has no variance: that is the point here
        warnings.simplefilter("ignore", UserWarning)
        score = float(build_metrics([metric], num_labels)(preds, target)[metric])
    return score if math.isfinite(score) else 0.0
