"""Parameter-efficient stages (models/methods.py): every pair of {full, lora, bitfit} runs as
intermediate -> target on the real MiniLM, and the target stage provably starts from what the
intermediate stage saved: the whole encoder (full), the base encoder plus the LoRA adapter's update
B @ A * alpha / rank, computed here from the adapter file itself (lora), or the base encoder with the saved
bias tensors (bitfit). One tiny run per pair (8 examples, one intermediate step); the three intermediate
checkpoints are trained once and shared through one cache, as in tests/test_head_kinds.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import stilts_lab.stage as stage
from stilts_lab.checkpoints import expected_key
from stilts_lab.identity import config_hash
from stilts_lab.intermediate_stage import COMPLETE_FILE
from stilts_lab.models.encoder import resolve_pretrained
from stilts_lab.models.methods import BITFIT_FILE, HANDOFF_FILE, METHODS, load_encoder
from stilts_lab.pipeline import run
from tests.conftest import compose_config

PAIRS = [(a, b) for a in METHODS for b in METHODS]
TINY_PAIR = ["intermediate=copa", "intermediate.train_size=8", "intermediate.eval_size=8", "intermediate.max_steps=1",
             "intermediate.batch_size=8", "intermediate.lr=1e-3", "target=rte", "target.train_size=8",
             "target.eval_size=8", "data.batch_size=8", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
             "resume=false"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("stage_methods_cache")


def _expected_start(method: str, checkpoint: Path, base: dict) -> dict:
    """The encoder weights the target stage must start from, computed from the checkpoint's files alone."""
    if method == "full":
        return AutoModel.from_pretrained(checkpoint).state_dict()
    if method == "bitfit":
        return base | load_file(str(checkpoint / BITFIT_FILE))
    adapter = load_file(str(checkpoint / "adapter_model.safetensors"))
    settings = json.loads((checkpoint / "adapter_config.json").read_text())
    scale = settings["lora_alpha"] / settings["r"]
    expected = dict(base)
    for key in adapter:
        if key.endswith("lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            delta = adapter[key.replace("lora_A", "lora_B")] @ adapter[key] * scale
            expected[f"{module}.weight"] = base[f"{module}.weight"] + delta
    return expected


@pytest.mark.slow
@pytest.mark.parametrize("intermediate_method,target_method", PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_every_method_hands_off_to_every_other(intermediate_method, target_method, shared_cache, tmp_path,
                                              data_dir, monkeypatch):
    starts = []  # (stage's task, its encoder's state when its own method is applied: after any hand-off)
    real_apply = stage.apply_method

    def apply_method(model, method):
        starts.append({n: p.detach().clone() for n, p in model.base_model.state_dict().items()})
        return real_apply(model, method)

    monkeypatch.setattr(stage, "apply_method", apply_method)
    cfg = compose_config(TINY_PAIR + [f"intermediate/method={intermediate_method}", f"target/method={target_method}"],
                         data_dir=data_dir, cache_dir=shared_cache, output_dir=tmp_path / "out")
    metrics = run(cfg)
    assert metrics["status"] in ("ok", "diverged") and metrics["error"] is None, metrics["error"]
    assert metrics["method"] == {"intermediate": intermediate_method, "target": target_method}

    # what the intermediate stage saved: only its method's part of the encoder, and its size recorded
    ckpt = Path(metrics["intermediate_checkpoint"]["path"])
    files = {p.name for p in ckpt.iterdir()}
    saved = {"full": "model.safetensors", "lora": "adapter_model.safetensors", "bitfit": BITFIT_FILE}
    assert saved[intermediate_method] in files and not (set(saved.values()) - {saved[intermediate_method]}) & files
    assert metrics["intermediate_checkpoint"]["method"] == intermediate_method
    size = sum(p.stat().st_size for p in ckpt.iterdir() if p.is_file() and p.name != COMPLETE_FILE)
    assert metrics["intermediate_checkpoint"]["bytes"] == size
    if intermediate_method != "full":
        assert size < 5_000_000  # MBs, not the 90 MB encoder
        # the base is named by the model config's spec, not this machine's path: a moved venv still resolves
        base_named = json.loads((ckpt / HANDOFF_FILE).read_text())["base_encoder"]
        assert base_named["pretrained"] == cfg.model.pretrained
        assert resolve_pretrained(cfg.model) not in json.dumps(base_named)

    # the target stage started from the intermediate checkpoint's weights, not from the base encoder
    base = AutoModel.from_pretrained(resolve_pretrained(cfg.model)).state_dict()
    target_start = starts[-1]
    expected = _expected_start(intermediate_method, ckpt, base)
    assert set(target_start) == set(base)
    for name, value in target_start.items():
        assert torch.allclose(value, expected[name], atol=1e-6), f"{name}: not the intermediate's weights"
    loaded = load_encoder(str(ckpt)).state_dict()  # what other readers of a checkpoint get (transfer, notebooks)
    assert all(torch.allclose(loaded[n], target_start[n], atol=1e-6) for n in target_start)
    changed = [n for n in target_start if not torch.equal(target_start[n], base[n])]
    assert changed, "the target stage started from the base encoder"
    if intermediate_method == "bitfit":
        assert all(n.endswith("bias") for n in changed)
    if intermediate_method == "lora":
        assert all(".query." in n or ".value." in n for n in changed)

    # the target's own method: what trains
    total, trainable = metrics["total_parameters"], metrics["trainable_parameters"]
    assert total > 20_000_000
    if target_method == "full":
        assert trainable == total
    else:
        assert trainable < total * (0.02 if target_method == "lora" else 0.005)


def test_method_full_leaves_the_keys_unchanged_and_others_key_their_settings(data_dir):
    def keys(*overrides):
        cfg = compose_config(["intermediate=copa", *overrides], data_dir=data_dir)
        return expected_key(cfg), config_hash(cfg, expected_key(cfg))

    plain = keys()
    assert keys("intermediate/method=full") == plain == keys("stage_method=full") == keys("target/method=full")
    lora = keys("intermediate/method=lora")
    assert lora[0] != plain[0]
    assert keys("intermediate/method=lora", "intermediate.method.rank=16")[0] != lora[0]
    assert keys("intermediate/method=bitfit")[0] not in (plain[0], lora[0])
    # the target's method is the trial's, not the checkpoint's
    assert keys("target/method=lora")[0] == plain[0] and keys("target/method=lora")[1] != plain[1]
    assert keys("stage_method=lora")[0] == lora[0]
    # vanilla: no intermediate stage runs, so its method does not split trials
    vanilla = compose_config(["intermediate=none", "stage_method=lora"], data_dir=data_dir)
    assert config_hash(vanilla) == config_hash(compose_config(["intermediate=none", "target/method=lora"],
                                                              data_dir=data_dir))


@pytest.mark.slow
def test_gpu_settings_train_lora_stages_on_cpu(tmp_path, data_dir, cache_dir):
    """trainer=gpu (bf16-mixed, clipping, fused AdamW, padding to 8) with LoRA in both stages, on the CPU."""
    cfg = compose_config(["trainer=gpu", "trainer.accelerator=cpu", "stage_method=lora"] + TINY_PAIR,
                         data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path / "out")
    metrics = run(cfg)
    assert metrics["status"] in ("ok", "diverged") and metrics["error"] is None, metrics["error"]
    assert metrics["device"]["precision"] == "bf16-mixed"
    assert metrics["intermediate_checkpoint"]["method"] == "lora" and metrics["intermediate_checkpoint"]["bytes"] < 5e6
    assert metrics["trainable_parameters"] < metrics["total_parameters"] * 0.02
