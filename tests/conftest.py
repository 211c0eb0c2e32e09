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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache per session: the generator conversion and tokenization happen once.
    STILTS_TEST_CACHE_DIR keeps it across sessions while developing."""
    keep = os.environ.get("STILTS_TEST_CACHE_DIR")
    return Path(keep) if keep else tmp_path_factory.mktemp("cache")


# Small enough to train in seconds on 2 CPU cores with the real MiniLM.
TINY = ["target.train_size=32", "target.eval_size=32", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "data.batch_size=16"]
