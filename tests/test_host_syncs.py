"""The hot loop's copies and checks that would wait for a GPU, caught on the CPU with spies: the batch
copy must be non-blocking for every task kind, and dev metrics must not run torch.unique per batch."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from stilts_lab.data.batching import collator
from stilts_lab.models.encoder import load_tokenizer, resolve_pretrained, resolve_tokenizer
from stilts_lab.models.metrics import build_metrics
from stilts_lab.models.stage_module import StageModule
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def tokenizer_and_source():
    cfg = compose_config([])
    return load_tokenizer(resolve_tokenizer(cfg.model)), resolve_pretrained(cfg.model)


def _features(tokenizer, kind: str) -> list[dict]:
    pairs = [("A man walks his dog.", "A person is outside."), ("It rains.", "The street is dry today.")]
    if kind == "multiple_choice":
        return [{"input_ids": [tokenizer(p, h)["input_ids"], tokenizer(h, p)["input_ids"]], "label": i}
                for i, (p, h) in enumerate(pairs)]
    return [tokenizer(p, h) | {"label": i} for i, (p, h) in enumerate(pairs)]


@pytest.mark.parametrize("kind", ["classification", "regression", "multiple_choice"])
def test_batch_copy_is_non_blocking_for_every_task_kind(tokenizer_and_source, monkeypatch, kind):
    tokenizer, source = tokenizer_and_source
    batch = collator(tokenizer, kind)(_features(tokenizer, kind))
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    module = StageModule(model, kind=kind, metrics=["accuracy"], num_labels=2, lr=1e-4, warmup_ratio=0.0,
                         weight_decay=0.0)
    copies = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        copies.append(kwargs.get("non_blocking", False))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    assert type(batch) is dict  # what the DataLoader hands Lightning
    # "meta" is a device Lightning copies to non-blocking (it never does for "cpu"), so the CPU sees
    # exactly the calls a CUDA run would make
    moved = module.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert set(moved) >= {"input_ids", "attention_mask", "labels"}
    assert all(t.device.type == "meta" for t in moved.values())
    assert copies and all(copies), f"{copies.count(False)} of {len(copies)} tensor copies were blocking"


# preds [0,1,1,0] against [0,1,0,0]: tp 1, tn 2, fp 1, fn 0
HAND = {"accuracy": 0.75, "mcc": 2 / 12 ** 0.5, "f1": 2 / 3, "macro_f1": (0.8 + 2 / 3) / 2}


@pytest.mark.parametrize("metric", sorted(HAND))
def test_dev_metric_updates_run_no_torch_unique(monkeypatch, metric):
    metrics = build_metrics([metric], num_labels=2)
    calls = []
    real_unique = torch.unique
    monkeypatch.setattr(torch, "unique", lambda *a, **k: calls.append(1) or real_unique(*a, **k))
    preds, target = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0])
    for _ in range(3):  # one update per eval batch
        metrics.update(preds, target)
    assert calls == [], f"{metric}: torch.unique ran {len(calls)} times in 3 updates (a sync per eval batch)"
    assert float(metrics.compute()[metric]) == pytest.approx(HAND[metric])  # unchecked, still right
