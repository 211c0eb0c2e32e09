"""Transferability estimates: LogME through the package ranks informative labels above shuffled ones."""
import torch

from stilts_lab.transfer.estimators import score
from stilts_lab.transfer.features import Features


def test_logme_ranks_linear_labels_above_shuffled():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = (x @ torch.randn(16, generator=g) > 0).long()  # a linear function of the features
    shuffled = y[torch.randperm(200, generator=g)]
    real = score(Features(x, y, "classification", 200))
    fake = score(Features(x, shuffled, "classification", 200))
    assert real["LogME"][0] > fake["LogME"][0] + 0.01
