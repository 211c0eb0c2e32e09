"""The GPU trainer's settings, composed and trained on the CPU: CI has no GPU, so this is what guards
trainer=gpu. bf16-mixed, clipping at 1.0 and fused AdamW together once failed on the first step
("AdamW does not allow for gradient clipping because it performs unscaling of gradients internally")."""
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from stilts_lab.models.encoder import SHAPES, load_tokenizer, resolve_pretrained, resolve_tokenizer, with_bpe_vocab
from stilts_lab.models.optim import StepGuard, adamw
from stilts_lab.pipeline import run
from stilts_lab.results import METRICS_FILE
from tests.conftest import compose_config, spy_stages

GPU_ON_CPU = ["trainer=gpu", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]
TINY_RTE = ["target=rte", "target.train_size=32", "target.eval_size=16", "trainer.max_epochs=1",
            "data.batch_size=8"]


@pytest.fixture
def stage_results(monkeypatch):
    """What pipeline.run's stages returned (module, data), for assertions on the trained module itself."""
    results = []

    def keep(real, **kw):
        results.append(real(**kw))
        return results[-1]

    spy_stages(monkeypatch, keep)
    return results


def _gpu_cfg(tmp_path, data_dir, cache_dir, extra=()):
    return compose_config(GPU_ON_CPU + TINY_RTE + list(extra), data_dir=data_dir, cache_dir=cache_dir,
                          output_dir=tmp_path)


@pytest.mark.slow
def test_gpu_settings_train_on_cpu_with_clipping_and_fused_adamw(tmp_path, data_dir, cache_dir, monkeypatch):
    """bf16-mixed + clip 1.0 + fused AdamW, as the GPU path builds them, train a few real steps."""
    import stilts_lab.models.optim as optim
    seen = {}
    real_before = StepGuard.before_step

    def spy(self, optimizer, params):
        norm = real_before(self, optimizer, params)
        grads = [p.grad for p in params if p.grad is not None]
        seen.setdefault("fused", optimizer.defaults["fused"])
        seen.setdefault("norms", []).append((float(norm), float(torch.nn.utils.get_total_norm(grads))))
        return norm

    monkeypatch.setattr(optim.StepGuard, "before_step", spy)
    metrics = run(_gpu_cfg(tmp_path, data_dir, cache_dir))
    assert metrics["error"] is None and metrics["status"] in ("ok", "diverged")  # learning: tests/test_learning.py
    assert seen["fused"] is True
    assert len(seen["norms"]) == 4  # 32 examples / batch 8, every step went through the guard
    for before, after in seen["norms"]:
        assert after <= 1.0 + 1e-3 and after == pytest.approx(min(before, 1.0), rel=1e-3)
    m = json.loads((tmp_path / METRICS_FILE).read_text())
    assert m["device"]["precision"] == "bf16-mixed" and m["device"]["accelerator"] == "cpu" and m["device"]["name"]
    assert m["examples_per_second"] > 0 and len(m["train_seconds_per_epoch"]) == 1
    assert m["examples_per_second"] == pytest.approx(32 / m["train_seconds_per_epoch"][0], rel=0.01)


@pytest.mark.slow
def test_nonfinite_loss_takes_no_step_and_stops(tmp_path, data_dir, cache_dir, monkeypatch, stage_results):
    """A poisoned encoder gives a NaN loss on the first step: no weight may change, the stage stops."""
    import stilts_lab.stage as stage
    snapshot = {}
    real_load = stage.load_head_model

    def poisoned(*args, **kwargs):
        model = real_load(*args, **kwargs)
        with torch.no_grad():
            model.base_model.embeddings.LayerNorm.weight[0] = float("nan")  # every token passes through it
        snapshot.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return model

    monkeypatch.setattr(stage, "load_head_model", poisoned)
    cfg = _gpu_cfg(tmp_path, data_dir, cache_dir, ["target.train_size=96", "trainer.log_every_n_steps=3"])
    metrics = run(cfg)
    assert metrics["status"] == "diverged"
    module = stage_results[-1].module
    assert module.diverged
    for name, p in module.model.named_parameters():
        assert torch.equal(p.detach().nan_to_num(), snapshot[name].nan_to_num()), f"{name} changed after a NaN loss"
    # stopped at the first guard check (step 3 of 12), not at the end of the epoch
    assert module.train_examples == 3 * 8


def test_guard_skips_the_fused_step_and_stays_tripped():
    layer = torch.nn.Linear(4, 2)
    opt = adamw(layer, lr=0.1, weight_decay=0.01, fused=True)
    guard = StepGuard(max_norm=1.0)
    params = list(layer.parameters())

    def step(grad_value):
        for p in params:
            p.grad = torch.full_like(p, grad_value)
        guard.before_step(opt, params)
        opt.step()

    step(5.0)  # finite: a real, clipped step
    after_first = [p.detach().clone() for p in params]
    assert not guard.tripped()
    step(float("nan"))
    step(1.0)  # finite again, but the trial already went non-finite: still no update
    assert guard.tripped()
    assert all(torch.equal(a, p) for a, p in zip(after_first, params))
    assert all(int(opt.state[p]["step"]) == 1 for p in params)


def test_guard_without_fused_kernel_flags_without_a_host_sync(monkeypatch):
    """The foreach path has no device-side skip: the guard records the non-finite step on the device
    (no bool()/item() per step) and the module stops the trial at its next check."""
    layer = torch.nn.Linear(4, 2)
    opt = adamw(layer, lr=0.1, weight_decay=0.01, fused=False)
    guard = StepGuard(max_norm=1.0)
    params = list(layer.parameters())
    for p in params:
        p.grad = torch.full_like(p, float("inf"))

    def no_sync(*_):
        raise AssertionError("host sync in the step")

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "__bool__", no_sync)
        m.setattr(torch.Tensor, "item", no_sync)
        guard.before_step(opt, params)
    assert guard.tripped()


def test_clip_value_zero_means_no_clipping():
    from stilts_lab.stage import clip_value
    assert clip_value({"gradient_clip_val": 0}) is None and clip_value({"gradient_clip_val": None}) is None
    assert clip_value({"precision": "bf16-mixed", "gradient_clip_val": 1.0}) == 1.0


@pytest.mark.parametrize("model,hidden,layers,params_m", [("roberta_large", 1024, 24, 355), ("roberta_base", 768, 12, 124),
                                                          ("minilm_l6", 384, 6, 22)])
def test_random_init_shapes_need_no_hub(model, hidden, layers, params_m, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_config([f"model={model}", "model.random_init=true"])
    source = resolve_pretrained(cfg.model)
    assert Path(source).parent == SHAPES
    config = AutoConfig.from_pretrained(source)
    assert (config.hidden_size, config.num_hidden_layers) == (hidden, layers)
    with torch.device("meta"):  # the parameter count without allocating the weights
        net = AutoModelForSequenceClassification.from_config(config)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6) == pytest.approx(params_m, abs=2)
    tok = load_tokenizer(resolve_tokenizer(cfg.model))
    ids = tok("A man is playing a guitar.", "Someone plays music.")["input_ids"]
    assert max(ids) < config.vocab_size and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_roberta_shape_tokenizer_splits_like_gpt2_bpe():
    tok = load_tokenizer(with_bpe_vocab(str(SHAPES / "tokenizers" / "roberta")))
    pieces = tok.convert_ids_to_tokens(tok("The cat sat on the mat.")["input_ids"])
    assert pieces == ["<s>", "The", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", ".", "</s>"]


def test_unknown_shape_names_the_key():
    from stilts_lab.errors import ConfigError
    cfg = compose_config(["model=roberta_large", "model.random_init=true", "model.shape=roberta-huge"])
    with pytest.raises(ConfigError, match="model.shape=roberta-huge.*roberta-large"):
        resolve_pretrained(cfg.model)


@pytest.mark.slow
def test_gpu_settings_run_both_stages(tmp_path, data_dir, cache_dir):
    """The intermediate stage trains under the same GPU settings, and its checkpoint carries the target stage."""
    metrics = run(_gpu_cfg(tmp_path, data_dir, cache_dir, [
        "intermediate=hellaswag_p", "intermediate.train_size=16", "intermediate.eval_size=8",
        "intermediate.max_epochs=1", "intermediate.batch_size=8"]))
    assert metrics["error"] is None and metrics["intermediate_checkpoint"] is not None
    stage = json.loads((Path(metrics["intermediate_checkpoint"]["path"]) / "stage_metrics.json").read_text())
    assert stage["train_examples"] == 16 and stage["diverged"] is False
    assert metrics["split"]["train_examples"] == 32


@pytest.mark.slow
def test_compile_switch_trains_and_keeps_plain_weights(tmp_path, data_dir, cache_dir, stage_results):
    """trainer.compile goes through torch.compile (the eager backend here: dynamo's tracing without a C++
    toolchain); the in-place compile keeps the state dict's keys, so checkpoints stay loadable."""
    cfg = _gpu_cfg(tmp_path, data_dir, cache_dir, ["trainer.compile=default", "trainer.compile_backend=eager",
                                                   "target.train_size=16"])
    metrics = run(cfg)
    assert metrics["error"] is None and metrics["device"]["compile"] == "default"
    # the steps that met a new shape compiled first: timed apart, left out of the train time and its examples
    module = stage_results[-1].module
    assert metrics["compile_seconds"] > 0 and module.compiled_shapes
    trained = 16 - 8 * len(module.compiled_shapes)
    assert module.train_examples == trained
    if trained:
        assert metrics["examples_per_second"] == pytest.approx(trained / metrics["train_seconds"], rel=0.01)
    model = stage_results[-1].module.model
    assert model._compiled_call_impl is not None  # compiled in place
    assert not any("_orig_mod" in k for k in model.state_dict())



@pytest.mark.parametrize("compile_mode", [None, "reduce-overhead"])
def test_compiled_model_sees_few_shapes(tmp_path, data_dir, cache_dir, compile_mode):
    """With trainer.compile on, every new input shape compiles again (and records a CUDA graph under
    reduce-overhead): the stage pads lengths to a multiple of 32 and drops the partial train batch, so
    training sees full batches in at most max_length / 32 lengths, and evaluation one shape more.
    Eager keeps the GPU trainer's padding to 8 and every example."""
    from omegaconf import OmegaConf
    from stilts_lab.stage import stage_data
    cfg = _gpu_cfg(tmp_path, data_dir, cache_dir, [f"trainer.compile={compile_mode or 'null'}", "target.train_size=300",
                                                   "target.eval_size=200", "data.batch_size=16"])
    tokenizer = load_tokenizer(resolve_tokenizer(cfg.model))
    data = stage_data(OmegaConf.to_container(cfg.target, resolve=True), tokenizer, batch_size=16,
                      trainer_cfg=cfg.trainer, seed=0, split_seed=0, data_dir=str(data_dir), cache_dir=str(cache_dir))
    train = [tuple(b["input_ids"].shape) for _ in range(3) for b in data.train_dataloader()]  # 3 epochs
    evaluation = {tuple(b["input_ids"].shape) for b in data.val_dataloader()}
    if compile_mode is None:
        assert sum(batch for batch, _ in train) == 3 * 300 and all(length % 8 == 0 for _, length in train)
        return
    buckets = -(-int(cfg.target.max_length) // 32)
    assert all(length % 32 == 0 for _, length in set(train) | evaluation), (train, evaluation)
    assert {batch for batch, _ in train} == {16} and len(train) == 3 * (300 // 16)  # 300 = 18 x 16 + 12 dropped
    assert len(set(train)) <= buckets and len(evaluation) <= buckets + 1, (set(train), evaluation)
