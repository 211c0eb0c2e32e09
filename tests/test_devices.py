"""One answer to "are we on a GPU" for every accelerator spelling, the real-fake builder generates on the
device the trainer uses (the builder's device argument is captured, nothing is generated), and
trainer=cpu trains in bf16 where the CPU computes it natively."""
import pytest
import torch

from stilts_lab.devices import native_bf16, torch_device, uses_gpu
from stilts_lab.checkpoints import intermediate_data_parts
from stilts_lab.identity import config_hash, intermediate_key
from stilts_lab.synth import realfake
from tests.conftest import compose_config


@pytest.mark.parametrize("accelerator,expected", [
    ("gpu", "cuda"), ("cuda", "cuda"), ("cpu", "cpu"), ("mps", "cpu"),
    ("auto", "cuda" if torch.cuda.is_available() else "cpu"),
])
def test_every_spelling_of_the_accelerator_picks_one_device(accelerator, expected):
    assert torch_device(accelerator) == expected
    assert uses_gpu(accelerator) == (expected == "cuda")


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_realfake_build_generates_where_the_trainer_trains(monkeypatch, data_dir, tmp_path, accelerator):
    seen = {}
    monkeypatch.setattr(realfake, "build_realfake", lambda **kw: seen.update(kw) or tmp_path)
    cfg = compose_config(["intermediate=realfake", f"trainer.accelerator={accelerator}"], data_dir=data_dir,
                         cache_dir=tmp_path)
    realfake.build_from_config(cfg)
    assert seen["device"] == "cuda"
    assert seen["isolate"]  # a config's build runs in a child, so the generator's memory leaves with it


def test_native_bf16_agrees_with_torch():
    capabilities = torch.cpu.get_capabilities()
    assert native_bf16() == bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def _trial(overrides, data_dir):
    cfg = compose_config(["intermediate=socialiqa", *overrides], data_dir=data_dir)
    return cfg, config_hash(cfg), intermediate_key(cfg, intermediate_data_parts(cfg, None))


def test_trainer_cpu_trains_in_bf16_where_native_and_every_key_sees_the_resolved_precision(data_dir):
    """trainer=cpu resolves its precision when composed: bf16-mixed on a CPU with AVX512-BF16 or AMX,
    32-true elsewhere. The config hash and the intermediate key see that value, so the default and
    the same precision spelled out are one trial and one checkpoint, and the other precision is not."""
    native, other = ("bf16-mixed", "32-true") if native_bf16() else ("32-true", "bf16-mixed")
    default, hash_default, key_default = _trial([], data_dir)
    assert default.trainer.precision == native
    _, hash_native, key_native = _trial([f"trainer.precision={native}"], data_dir)
    _, hash_other, key_other = _trial([f"trainer.precision={other}"], data_dir)
    assert (hash_default, key_default) == (hash_native, key_native)
    assert hash_other != hash_default and key_other != key_default
