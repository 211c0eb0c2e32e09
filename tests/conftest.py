"""Shared fixtures: the real data root, real Hydra composition, one cache per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

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


def compose_config(overrides: list[str], *, data_dir: Path | None = None, cache_dir: Path | None = None,
                   output_dir: Path | None = None):
    extra = []
    if data_dir is not None:
        extra.append(f"paths.data_dir={data_dir}")
    if cache_dir is not None:
        extra.append(f"paths.cache_dir={cache_dir}")
    if output_dir is not None:
        extra.append(f"+output_dir={output_dir}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides + extra)


# Small enough to train in seconds on 2 CPU cores with the real MiniLM.
TINY = ["target.train_size=32", "target.eval_size=32", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "data.batch_size=16"]
