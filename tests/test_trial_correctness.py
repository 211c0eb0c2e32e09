"""Correctness debts of a trial, each shown on the real pipeline: code versions and the intermediate
checkpoint's key in config_hash, a metrics.json for every failure, no score for a diverged stage,
process-wide settings held per stage, and one GPU per parallel worker."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stilts_lab import identity
from stilts_lab.checkpoints import expected_key, locate
from stilts_lab.identity import config_hash
from stilts_lab.pipeline import run
from stilts_lab.results import METRICS_FILE
from tests.conftest import TINY, compose_config, spy_stages


def _hash(overrides, data_dir):
    cfg = compose_config(overrides, data_dir=data_dir)
    return config_hash(cfg, expected_key(cfg))


@pytest.mark.parametrize("constant, intermediate, moves", [
    ("INTERMEDIATE_VERSION", "intermediate=socialiqa", True),
    ("INTERMEDIATE_VERSION", "intermediate=none", False),   # vanilla trains no intermediate stage
    ("TOKENIZATION_VERSION", "intermediate=none", True),
    ("RECIPE_VERSION", "intermediate=realfake", True),
    ("RECIPE_VERSION", "intermediate=socialiqa", False),    # nothing built by the recipe
])
def test_a_code_version_bump_makes_another_trial(constant, intermediate, moves, data_dir, monkeypatch):
    """After a bump that retrains every checkpoint (or rebuilds every set), resuming in the same folder
    must not keep the old results: the trial's config_hash moves with the constant."""
    before = _hash([intermediate], data_dir)
    old = getattr(identity, constant)
    monkeypatch.setattr(identity, constant, f"{old}-bumped" if isinstance(old, str) else old + 1)
    assert (_hash([intermediate], data_dir) != before) == moves


def test_the_checkpoint_key_is_known_before_training_and_is_what_locate_finds(data_dir, tmp_path):
    """expected_key (hashed into config_hash) without building anything equals the key of the
    checkpoint the trial then uses; for a real-fake task that means the built set's key."""
    cfg = compose_config(["intermediate=socialiqa"], data_dir=data_dir, cache_dir=tmp_path)
    assert expected_key(cfg) == locate(cfg).key
    assert expected_key(compose_config(["intermediate=none"], data_dir=data_dir)) is None


def test_the_generator_weights_reach_config_hash_through_the_checkpoint_key(data_dir, monkeypatch):
    """What the config does not say, but the real-fake set depends on (here: the generator's weights
    file), moves the trial's config_hash through the checkpoint key."""
    from stilts_lab.synth import spec
    before = _hash(["intermediate=realfake"], data_dir)
    real = spec._generator_identity
    monkeypatch.setattr(spec, "_generator_identity", lambda gen_cfg: real(gen_cfg) | {"weights": "other.gguf"})
    assert _hash(["intermediate=realfake"], data_dir) != before


def test_a_failure_before_training_still_writes_metrics_json(data_dir, cache_dir, tmp_path, monkeypatch):
    """A crash in describing the trial (here, device_info as `trainer.devices=auto` on a GPU box once
    crashed it with int("auto")) leaves metrics.json saying failed and why, so the sweep counts it."""
    import stilts_lab.pipeline as pipeline

    def broken(cfg):
        raise ValueError("invalid literal for int() with base 10: 'auto'")

    monkeypatch.setattr(pipeline, "device_info", broken)
    cfg = compose_config(TINY, data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path)
    with pytest.raises(ValueError):
        run(cfg)
    metrics = json.loads((tmp_path / METRICS_FILE).read_text())
    assert metrics["status"] == "failed" and "int()" in metrics["error"] and metrics["target"] == "rte"


def test_gpu_count_reads_auto_and_lists(monkeypatch):
    from stilts_lab.environment import gpu_count
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert gpu_count("auto") == 4 and gpu_count(-1) == 4 and gpu_count(2) == 2 and gpu_count([0, 3]) == 2


@pytest.mark.slow
def test_a_failure_in_scoring_keeps_the_finished_stage(data_dir, cache_dir, tmp_path, monkeypatch):
    """Training finished, then scoring crashed: metrics.json says failed and still holds the dev
    scores of the stage that finished."""
    import stilts_lab.pipeline as pipeline
    calls = {"n": 0}
    real = pipeline.device_info

    def fails_second_time(cfg):   # identify() calls it first, score() second
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("lost the device")
        return real(cfg)

    monkeypatch.setattr(pipeline, "device_info", fails_second_time)
    cfg = compose_config(TINY, data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path)
    with pytest.raises(RuntimeError):
        run(cfg)
    metrics = json.loads((tmp_path / METRICS_FILE).read_text())
    assert metrics["status"] == "failed" and "lost the device" in metrics["error"]
    assert len(metrics["dev_metric_per_epoch"]) == 1 and metrics["best_dev_metric"] is not None


@pytest.mark.slow
def test_a_diverged_stage_is_never_scored(data_dir, cache_dir, tmp_path, monkeypatch):
    """On the non-fused optimizer path the NaN step updates the weights; Lightning still runs the
    epoch's dev pass after should_stop. That pass must record nothing: no best_dev_metric from
    NaN-updated weights."""
    import stilts_lab.stage as stage
    real_load = stage.load_head_model

    def poisoned(*args, **kwargs):
        model = real_load(*args, **kwargs)
        with torch.no_grad():
            model.base_model.embeddings.LayerNorm.weight[0] = float("nan")
        return model

    modules = []
    spy_stages(monkeypatch, lambda real, **kw: modules.append(real(**kw)) or modules[-1])
    monkeypatch.setattr(stage, "load_head_model", poisoned)
    cfg = compose_config(TINY + ["target.train_size=64", "trainer.fused=false", "trainer.log_every_n_steps=2"],
                         data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path)
    metrics = run(cfg)
    module = modules[-1].module
    assert module.diverged and module.dev_history == []
    assert metrics["status"] == "diverged" and metrics["best_dev_metric"] is None


@pytest.mark.slow
def test_process_settings_do_not_leak_into_the_next_trial(data_dir, cache_dir, tmp_path, monkeypatch):
    """Two trials in one process (a joblib worker, a notebook): the first asks for TF32 ("high"), the
    second for nothing. The second must run at the process's own precision. CUDA's presence is faked
    (stage.uses_gpu) so the GPU-only setting is applied on this CPU."""
    import stilts_lab.stage as stage
    monkeypatch.setattr(stage, "uses_gpu", lambda accelerator: True)
    seen = []

    def spy(real, **kw):
        result = real(**kw)
        seen.append(torch.get_float32_matmul_precision())
        return result

    import stilts_lab.intermediate_stage as intermediate_stage
    import stilts_lab.pipeline as pipeline
    for module in (pipeline, intermediate_stage):
        monkeypatch.setattr(module, "train_stage", lambda **kw: spy(stage.train_stage, **kw))
    monkeypatch.setattr(stage.L.Trainer, "fit", lambda self, module, datamodule=None: seen.append(
        torch.get_float32_matmul_precision()))
    monkeypatch.setattr(pipeline, "score", lambda metrics, result, cfg: None)
    monkeypatch.setattr(pipeline, "trial_splits", lambda checkpoint, splits: {})
    before = torch.get_float32_matmul_precision()
    for n, precision in enumerate(("high", "null")):
        cfg = compose_config(TINY + [f"trainer.matmul_precision={precision}"], data_dir=data_dir,
                             cache_dir=cache_dir, output_dir=tmp_path / str(n))
        run(cfg)
    # during each fit, then after each stage
    assert seen == ["high", before, before, before]


def _claim(lock_dir: str, gpus: list[str], ready, release, out) -> None:
    import os

    from stilts_lab.gpu_slots import assign_gpu
    out.put((assign_gpu(Path(lock_dir), gpus), os.environ.get("CUDA_VISIBLE_DEVICES")))
    ready.set()
    release.wait(30)


def test_each_parallel_worker_gets_its_own_gpu(tmp_path):
    """Worker processes claim slots: with 2 GPUs the first two get 0 and 1, a third shares (slot 2 ->
    GPU 0); when a worker exits its slot (and GPU) goes to the next."""
    ctx = multiprocessing.get_context("spawn")
    out, release = ctx.Queue(), ctx.Event()
    workers = []
    for _ in range(3):
        ready = ctx.Event()
        p = ctx.Process(target=_claim, args=(str(tmp_path), ["0", "1"], ready, release, out))
        p.start()
        assert ready.wait(60)
        workers.append(p)
    got = [out.get(timeout=10) for _ in range(3)]
    assert got == [("0", "0"), ("1", "1"), ("0", "0")]
    release.set()
    for p in workers:
        p.join(30)
    # every slot free again: the next worker takes slot 0
    release2, ready = ctx.Event(), ctx.Event()
    release2.set()
    p = ctx.Process(target=_claim, args=(str(tmp_path), ["0", "1"], ready, release2, out))
    p.start()
    p.join(60)
    assert out.get(timeout=10) == ("0", "0")


def test_one_gpu_is_shared_not_assigned(tmp_path, monkeypatch):
    from stilts_lab.gpu_slots import assign_gpu
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert assign_gpu(tmp_path, ["0"]) is None and "CUDA_VISIBLE_DEVICES" not in __import__("os").environ


def test_visible_gpus_respects_the_users_mask(monkeypatch):
    from stilts_lab.gpu_slots import visible_gpus
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus() == ["2", "5"]


def test_a_trial_that_crashes_before_the_pipeline_is_still_a_failed_trial(tmp_path, data_dir):
    """A job signalled during its imports (or a broken install) never reached pipeline.run: it still
    leaves a failed metrics.json of this command, so the sweep exits non-zero instead of 0 with a
    trial missing. An earlier finished result in the same folder is never overwritten."""
    sweep = tmp_path / "sweep"
    (sweep / "1").mkdir(parents=True)
    finished = {"status": "ok", "best_dev_metric": 0.6, "run_id": "earlier"}
    (sweep / "1" / METRICS_FILE).write_text(json.dumps(finished))
    # python -m stilts_lab, with pipeline.run crashing as an interrupted import would
    script = ("import runpy, sys\nimport stilts_lab.pipeline as p\n"
              "def crash(cfg):\n    raise RuntimeError('signalled during imports')\n"
              "p.run = crash\n"
              f"sys.argv = ['stilts_lab', '-m', 'seed=1,2', 'hydra.sweep.dir={sweep}']\n"
              "runpy.run_module('stilts_lab', run_name='__main__', alter_sys=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "STILTS_DATA_DIR": str(data_dir)})
    assert done.returncode == 1, done.stderr[-1000:]
    crashed = json.loads((sweep / "0" / METRICS_FILE).read_text())
    assert crashed["status"] == "failed" and "signalled during imports" in crashed["error"] and crashed["config_hash"]
    assert json.loads((sweep / "1" / METRICS_FILE).read_text()) == finished
