"""The hand-off between stages, proven: the intermediate stage learns its task, and the target stage
starts from exactly the weights that stage saved, not from the base encoder.

The intermediate task is tests/test_learning.py's negation task (known to be learnable in a few dozen
steps); the target is a 32-example RTE subset. Spies, not mocks: the real loader runs, and the test
keeps each stage's encoder weights as they were when its first training step began."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModel

import stilts_lab.stage as stage
from stilts_lab.models.encoder import resolve_pretrained
from stilts_lab.pipeline import COMPLETE_FILE, run
from tests.conftest import compose_config
from tests.test_learning import MARGIN, write_task


@pytest.mark.slow
def test_the_target_stage_starts_from_the_intermediate_checkpoint(tmp_path, data_dir, monkeypatch):
    conf = write_task(tmp_path)
    (conf / "intermediate").mkdir()
    shutil.copy(conf / "target" / "negation.yaml", conf / "intermediate" / "negation.yaml")
    cfg = compose_config([f"hydra.searchpath=[file://{conf}]", "intermediate=negation", "intermediate.lr=1e-4",
                          "intermediate.max_epochs=3", "intermediate.batch_size=16", "intermediate.train_size=null",
                          "intermediate.eval_size=80", "intermediate.max_steps=-1", "target=rte",
                          "target.train_size=32", "target.eval_size=32", "trainer.max_epochs=1",
                          "trainer.enable_progress_bar=false", "data.batch_size=16", "resume=false"],
                         data_dir=data_dir, cache_dir=tmp_path / "cache", output_dir=tmp_path / "out")
    at_first_step = []  # (source, encoder state) per stage; nothing has trained when the loader returns
    real_load = stage.load_head_model

    def load_head_model(auto_cls, source, **kwargs):
        model = real_load(auto_cls, source, **kwargs)
        at_first_step.append((source, {n: p.detach().clone() for n, p in model.base_model.state_dict().items()}))
        return model

    monkeypatch.setattr(stage, "load_head_model", load_head_model)
    metrics = run(cfg)
    assert metrics["status"] in ("ok", "diverged"), metrics["error"]

    checkpoint = metrics["intermediate_checkpoint"]["path"]
    stage_metrics = json.loads((tmp_path / "cache" / "intermediate" / checkpoint.split("/")[-1] / COMPLETE_FILE)
                               .read_text())
    # the intermediate stage learned its task: its held-out score beats its trivial baseline clearly
    assert stage_metrics["best_dev_metric"] >= stage_metrics["trivial_baseline"] + MARGIN, stage_metrics

    (_, intermediate_start), (target_source, target_start) = at_first_step
    assert target_source == checkpoint
    saved = AutoModel.from_pretrained(checkpoint).state_dict()
    base = AutoModel.from_pretrained(resolve_pretrained(cfg.model)).state_dict()
    shared = [n for n in target_start if n in saved]
    assert len(shared) == len(saved) > 50
    assert all(torch.equal(target_start[n], saved[n]) for n in shared), "target did not start from the checkpoint"
    assert not all(torch.equal(target_start[n], base[n]) for n in shared), "the checkpoint is the base encoder"
    assert all(torch.equal(intermediate_start[n], base[n]) for n in shared if n in base)
