"""The real-fake generator (SmolLM2) does not outlive its build. The encoder trains in the same process
right after, so a generator kept alive would hold its weights for the whole run (docs/performance.md)."""
from __future__ import annotations

import os
import subprocess
import sys
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


# A fresh process churns blocks the way training does: a 4 MB block freed (glibc then raises its dynamic
# threshold to 4 MB), then 300 blocks of 1.5 MB, each followed by a small block that stays alive and pins
# the heap behind it; the 1.5 MB blocks are freed. It prints the resident MB that the freeing gave back.
CHURN = """
import sys, torch
from stilts_lab.memory import release_freed_memory, set_mmap_threshold
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
applied = set_mmap_threshold(int(sys.argv[1])) if sys.argv[1].isdigit() else False
first = torch.ones(2**20)                # 4 MB
del first
big, pins = [], []
for i in range(300):
    big.append(torch.ones(3 * 2**17))    # 1.5 MB
    pins.append(torch.ones(2**10))       # 4 KB, heap either way
before = rss_mb()
big.clear()
if sys.argv[1] == "trim":
    applied = release_freed_memory()
print(applied, round(before - rss_mb()))
"""


def _churn(threshold: str) -> tuple[bool, int]:
    done = subprocess.run([sys.executable, "-c", CHURN, threshold], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")})
    assert done.returncode == 0, done.stderr[-2000:]
    applied, released = done.stdout.split()
    return applied == "True", int(released)


def test_mmap_threshold_gives_freed_blocks_back():
    """With glibc's dynamic threshold the freed 1.5 MB blocks stay resident; under trainer.cpu's fixed
    1 MB threshold (memory.set_mmap_threshold) their ~450 MB go back to the OS at once."""
    applied, released = _churn("1048576")
    assert applied and released >= 400, released
    applied, kept = _churn("none")
    assert not applied and kept < 100, kept


def test_malloc_trim_gives_the_heaps_free_pages_back():
    """stage.ReleaseFreedMemory (after each dev pass; every n steps with trainer.malloc_trim_every_n_steps):
    the blocks that glibc's dynamic threshold left in the heap are released by malloc_trim after they are freed."""
    applied, released = _churn("trim")
    assert applied and released >= 400, released


def _hold_memory(megabytes: int, fail: bool) -> tuple[int, int, int]:
    """In the child: allocate and touch `megabytes`, then report (pid, torch threads, RSS in MB)."""
    from stilts_lab.errors import DataError

    if fail:
        raise DataError("examples.jsonl line 3: malformed row")
    block = torch.ones(megabytes * 2**20 // 4)  # float32: touched, so resident
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))
    return os.getpid(), torch.get_num_threads(), rss + 0 * int(block[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_run_isolated_keeps_the_childs_memory_out_of_this_process():
    """memory.run_isolated (the pipeline's real-fake builds): the work runs in another process, holds its
    memory there, gets this process's torch threads, and its errors come back as they were raised."""
    from stilts_lab.errors import DataError
    from stilts_lab.memory import run_isolated

    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before = rss()
        pid, child_threads, child_rss = run_isolated(_hold_memory, 300, False)
        assert pid != os.getpid() and child_threads == 1
        assert child_rss >= 300 and rss() - before < 100, (child_rss, before, rss())
        with pytest.raises(DataError, match="examples.jsonl line 3: malformed row"):
            run_isolated(_hold_memory, 1, True)
    finally:
        torch.set_num_threads(threads)
