"""Dev metrics by name (torchmetrics), and the score of a trivial predictor that tells learning
from chance."""
from __future__ import annotations

from collections import Counter

import torch
import torchmetrics
from torchmetrics import classification as C
from torchmetrics import regression as R

from stilts_lab.errors import ConfigError


def build_metrics(names: list[str], num_labels: int) -> torchmetrics.MetricCollection:
    # multiclass with num_classes=2 is plain accuracy / MCC; "f1" is the positive class's (MRPC).
    factories = {
        "accuracy": lambda: C.MulticlassAccuracy(num_classes=num_labels, average="micro"),
        "mcc": lambda: C.MulticlassMatthewsCorrCoef(num_classes=num_labels),
        "f1": lambda: C.BinaryF1Score(),
        "macro_f1": lambda: C.MulticlassF1Score(num_classes=num_labels, average="macro"),
        "pearson": R.PearsonCorrCoef,
        "spearman": R.SpearmanCorrCoef,
    }
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; known: {sorted(factories)}")
    return torchmetrics.MetricCollection({n: factories[n]() for n in names})


def trivial_baseline(metric: str, train_labels: list, eval_labels: list, num_labels: int) -> float:
    """The main metric of always predicting the training set's majority label (its mean, for
    regression). Constant predictions score 0 on MCC and have no correlation: 0 there."""
    if metric in ("mcc", "pearson", "spearman"):
        return 0.0
    majority = Counter(train_labels).most_common(1)[0][0]
    preds = torch.full((len(eval_labels),), int(majority), dtype=torch.long)
    m = build_metrics([metric], num_labels)
    return float(m(preds, torch.tensor(eval_labels, dtype=torch.long))[metric])
