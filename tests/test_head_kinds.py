"""Any head kind to any other: every pair of {classification, regression, multiple choice} runs as
intermediate -> target, and the target's head is the target's own, not the one whose config the
intermediate checkpoint carries (problem_type, num_labels, id2label travel with the saved encoder).

One tiny real run per pair: the embedded MiniLM, 8 examples, one target step. The three intermediate
checkpoints are trained once and shared through one cache. The runs also set gradient_clip_val=0,
which means "no clipping" and must train, not fail in the step guard."""
from __future__ import annotations

import pytest

import stilts_lab.stage as stage
from stilts_lab.pipeline import run
from tests.conftest import compose_config

TASK_OF_KIND = {"classification": "rte", "regression": "stsb", "multiple_choice": "copa"}
# the target's head as its kind defines it: (problem_type, number of outputs)
EXPECTED_HEAD = {"classification": ("single_label_classification", 2), "regression": ("regression", 1),
                 "multiple_choice": (None, 1)}
PAIRS = [(a, b) for a in TASK_OF_KIND for b in TASK_OF_KIND]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("head_kinds_cache")


@pytest.mark.slow
@pytest.mark.parametrize("intermediate_kind,target_kind", PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_every_head_kind_transfers_to_every_other(intermediate_kind, target_kind, shared_cache, tmp_path,
                                                   data_dir, monkeypatch):
    heads = []  # (source, model) of each stage's freshly loaded head
    real_load = stage.load_head_model

    def load_head_model(auto_cls, source, **kwargs):
        model = real_load(auto_cls, source, **kwargs)
        heads.append((source, model))
        return model

    monkeypatch.setattr(stage, "load_head_model", load_head_model)
    cfg = compose_config([
        f"intermediate={TASK_OF_KIND[intermediate_kind]}", "intermediate.train_size=8", "intermediate.eval_size=8",
        "intermediate.max_steps=1", "intermediate.batch_size=8", f"target={TASK_OF_KIND[target_kind]}",
        "target.train_size=8", "target.eval_size=8", "data.batch_size=8", "trainer.max_epochs=1",
        "trainer.gradient_clip_val=0", "trainer.enable_progress_bar=false", "resume=false"],
        data_dir=data_dir, cache_dir=shared_cache, output_dir=tmp_path / "out")
    metrics = run(cfg)

    assert metrics["status"] in ("ok", "diverged") and metrics["error"] is None, metrics["error"]
    assert len(metrics["dev_metric_per_epoch"]) == 1
    target_source, target_model = heads[-1]
    assert target_source == metrics["intermediate_checkpoint"]["path"]  # it started from the checkpoint
    problem_type, outputs = EXPECTED_HEAD[target_kind]
    assert target_model.config.problem_type == problem_type
    assert target_model.classifier.out_features == outputs
    assert len(target_model.config.id2label) == outputs
