"""Shared fixtures: the real data root, real Hydra composition, one cache per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from stilts_lab.compose import compose_config  # noqa: F401  (the tests' composition is the package's)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
DATA_DIR = Path(os.environ.get("STILTS_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "rte" / "train.tsv").is_file():
        pytest.fail(f"data root {DATA_DIR} lacks rte/train.tsv: set STILTS_DATA_DIR to ../shared/data")
    return DATA_DIR


# Under pytest-xdist (make test runs 2 workers), each worker is its own process: one torch thread
# each, so that two workers share the 2 cores instead of four threads fighting over them. Subprocesses
# inherit it through OMP_NUM_THREADS.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache per test command, shared by the xdist workers (the caches are built under file locks,
    tests/test_cache_races.py): the generator conversion and each tokenization happen once.
    STILTS_TEST_CACHE_DIR keeps it across sessions while developing."""
    keep = os.environ.get("STILTS_TEST_CACHE_DIR")
    if keep:
        return Path(keep)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is per worker; its parent is the command's
        shared = tmp_path_factory.getbasetemp().parent / "cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("cache")


# Small enough to train in seconds on 2 CPU cores with the real MiniLM.
TINY = ["target.train_size=32", "target.eval_size=32", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "data.batch_size=16"]


def spy_stages(monkeypatch, spy) -> None:
    """Route every stage's train_stage call, the target's (pipeline) and an in-process intermediate's
    (intermediate_stage), through spy(real_train_stage, **kwargs). A stage trained in a child process
    (trainer.isolate_intermediate) is out of reach, so spying tests keep it in this one."""
    from stilts_lab import intermediate_stage, pipeline

    real = pipeline.train_stage
    for module in (pipeline, intermediate_stage):
        monkeypatch.setattr(module, "train_stage", lambda **kw: spy(real, **kw))
