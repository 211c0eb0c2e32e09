"""Compose a trial's config the way the CLI does, from Python: for benchmarks, notebooks and tests."""
from __future__ import annotations

from pathlib import Path

CONF = Path(__file__).resolve().parent / "conf"  # the package's config tree (a link to conf/ in a checkout)


def compose_config(overrides: list[str], *, data_dir: Path | None = None, cache_dir: Path | None = None,
                   output_dir: Path | None = None):
    """The resolved config for `python -m stilts_lab <overrides>`, with the data root, cache and
    output folder set when given (a composed config has no Hydra run dir of its own)."""
    from hydra import compose, initialize_config_dir
    extra = []
    if data_dir is not None:
        extra.append(f"paths.data_dir={data_dir}")
    if cache_dir is not None:
        extra.append(f"paths.cache_dir={cache_dir}")
    if output_dir is not None:
        extra.append(f"+output_dir={output_dir}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides) + extra)
