"""One answer to "are we on a GPU" for every accelerator spelling, and the real-fake builder generates
on the device the trainer uses (the builder's device argument is captured, nothing is generated)."""
import pytest
import torch

from stilts_lab.devices import torch_device, uses_gpu
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
