"""The real-fake generator (SmolLM2) does not outlive its build. The encoder trains in the same process
right after, so a generator kept alive would hold its weights for the whole run (docs/performance.md)."""
from __future__ import annotations

import weakref

import pytest
import torch
from omegaconf import OmegaConf

from stilts_lab.synth import generator as generator_module
from stilts_lab.synth.realfake import build_realfake
from tests.conftest import DATA_DIR, REPO


@pytest.mark.slow
def test_generator_is_released_when_the_build_returns(cache_dir, data_dir, monkeypatch):
    gen_cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf/generator/smollm2_135m.yaml"))
    alive = []
    real_load = generator_module.load_generator

    def load_generator(*args, **kwargs):  # a spy: the real generator, watched through a weak reference
        model, tokenizer = real_load(*args, **kwargs)
        alive.append(weakref.ref(model))
        return model, tokenizer

    monkeypatch.setattr(generator_module, "load_generator", load_generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared test machines: see test_synth.one_thread
    try:
        # seed 11: a set no other test builds, so this build loads the generator
        build_realfake(gen_cfg=gen_cfg, sources=[DATA_DIR / "wikitext2/wiki.test.raw"], num_examples=3,
                       num_fakes=3, seed=11, cache_dir=cache_dir)
    finally:
        torch.set_num_threads(threads)
    assert len(alive) == 1
    assert alive[0]() is None, "the generator is still referenced after build_realfake returned"
