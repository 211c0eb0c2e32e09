"""The whole two-stage pipeline with the real MiniLM and the real SmolLM2 on tiny subsets."""
import json

import pytest
import torch

from stilts_lab.pipeline import COMPLETE_FILE, run
from stilts_lab.results import METRICS_FILE
from tests.conftest import TINY, compose_config, spy_stages

REALFAKE_TINY = ["intermediate=realfake", "intermediate.train_size=8", "intermediate.eval_size=4",
                 "intermediate.max_epochs=1", "intermediate.batch_size=4",
                 # the filter still runs (a pool of 4 for 3 fakes, one round), at a tiny build's cost
                 "intermediate.adversarial_filter.pool=4", "intermediate.adversarial_filter.rounds=1"]
REQUIRED = {"config_hash", "model", "intermediate", "target", "seed", "hparams", "metric_name",
            "dev_metric_per_epoch", "best_dev_metric", "last_dev_metric", "trivial_baseline", "train_seconds",
            "examples_per_second", "intermediate_checkpoint", "status", "versions", "config"}


@pytest.mark.slow
def test_vanilla_run_writes_metrics(tmp_path, data_dir, cache_dir, monkeypatch):
    cfg = compose_config(["+experiment=vanilla_rte"] + TINY, data_dir=data_dir, cache_dir=cache_dir,
                         output_dir=tmp_path)
    # A spy: the real stage runs; the test keeps the labels it trained and scored on.
    results = []
    spy_stages(monkeypatch, lambda real, **kw: results.append(real(**kw)) or results[-1])
    run(cfg)
    m = json.loads((tmp_path / METRICS_FILE).read_text())
    assert REQUIRED <= m.keys()
    assert m["intermediate_checkpoint"] is None
    assert len(m["dev_metric_per_epoch"]) == 1 and 0 <= m["best_dev_metric"] <= 1
    assert m["best_dev_metric"] == max(m["dev_metric_per_epoch"]) == m["last_dev_metric"]
    # 32 examples and one epoch teach MiniLM nothing (tests/test_learning.py shows that it learns):
    # what this checks is that the score is judged against the right baseline. The majority class of
    # the train subset, counted here, scored on the dev subset:
    data = results[0].data
    train, dev = [ex["label"] for ex in data.train_set], [ex["label"] for ex in data.eval_set]
    majority = max(set(train), key=train.count)
    assert m["trivial_baseline"] == pytest.approx(dev.count(majority) / len(dev))
    assert m["status"] == ("diverged" if m["best_dev_metric"] <= m["trivial_baseline"] else "ok")
    assert m["split"]["train_examples"] == 32 and m["split"]["eval_examples"] == 32
    assert m["hparams"]["batch_size"] == 16 and m["metric_name"] == "accuracy"
    assert m["examples_per_second"] > 0


@pytest.mark.slow
def test_realfake_to_rte_trains_intermediate_once(tmp_path, data_dir, cache_dir, monkeypatch):
    overrides = ["+experiment=realfake_to_rte"] + REALFAKE_TINY + TINY
    run(compose_config(overrides, data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path / "a"))
    first = json.loads((tmp_path / "a" / METRICS_FILE).read_text())
    ckpt = first["intermediate_checkpoint"]
    stage = json.loads((__import__("pathlib").Path(ckpt["path"]) / COMPLETE_FILE).read_text())
    assert stage["train_examples"] == 8 and stage["eval_examples"] == 4
    assert (__import__("pathlib").Path(ckpt["path"]) / "config.json").is_file()

    # A second trial (another target seed) must reuse the checkpoint: neither build nor train again.
    import stilts_lab.synth.realfake as realfake
    monkeypatch.setattr(realfake, "_build", lambda *a, **k: pytest.fail("rebuilt real-fake data"))
    calls = []
    spy_stages(monkeypatch, lambda real, **kw: calls.append(kw["task"]["name"]) or real(**kw))
    run(compose_config(overrides + ["seed=7"], data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path / "b"))
    second = json.loads((tmp_path / "b" / METRICS_FILE).read_text())
    assert calls == ["rte"]
    assert second["intermediate_checkpoint"] == ckpt
    assert second["config_hash"] != first["config_hash"]


@pytest.mark.slow
def test_isolated_intermediate_stage_saves_the_same_checkpoint(tmp_path, data_dir):
    """trainer.isolate_intermediate (make run's setting) trains the stage in a child process: the
    checkpoint, its record and the trial's score are those of training in this process."""
    import pathlib

    from safetensors.torch import load_file

    overrides = ["intermediate=copa", "intermediate.train_size=16", "intermediate.eval_size=8", "intermediate.max_steps=2",
                 "intermediate.batch_size=8", "trainer.num_threads=1"] + TINY
    metrics, weights = {}, {}
    for isolate in (True, False):
        out = tmp_path / str(isolate)
        run(compose_config(overrides + [f"trainer.isolate_intermediate={str(isolate).lower()}"], data_dir=data_dir,
                           cache_dir=tmp_path / f"cache-{isolate}", output_dir=out))
        metrics[isolate] = json.loads((out / METRICS_FILE).read_text())
        path = pathlib.Path(metrics[isolate]["intermediate_checkpoint"]["path"])
        weights[isolate] = load_file(path / "model.safetensors")
        stage = json.loads((path / COMPLETE_FILE).read_text())
        metrics[isolate]["stage"] = {k: stage[k] for k in ("dev_metric_per_epoch", "train_examples", "files")}
    assert metrics[True]["intermediate_checkpoint"]["key"] == metrics[False]["intermediate_checkpoint"]["key"]
    assert metrics[True]["stage"] == metrics[False]["stage"]
    assert metrics[True]["dev_metric_per_epoch"] == metrics[False]["dev_metric_per_epoch"]
    assert weights[True].keys() == weights[False].keys()
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])
