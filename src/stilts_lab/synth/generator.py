"""The causal LM that writes fake endings: the embedded SmolLM2 GGUF (converted once to safetensors
under the cache) or, for online users, a Hugging Face Hub model such as GPT-2 medium."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from filelock import FileLock

from stilts_lab.errors import ConfigError
from stilts_lab.memory import release_freed_memory


def find_gguf(gen_cfg: Mapping) -> Path | None:
    """Path of the GGUF file shipped in `embedded_package`, or None when that package is not
    installed. find_spec locates the package without importing it (importing is not needed and
    some such packages do work at import time)."""
    package = gen_cfg.get("embedded_package")
    if not package:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / gen_cfg["gguf_file"]
        if path.is_file():
            return path
    raise ConfigError(f"generator.gguf_file: {gen_cfg['gguf_file']} not found in package {package} "
                      f"({', '.join(spec.submodule_search_locations)})")


def converted_dir(gen_cfg: Mapping, gguf: Path, cache_dir: Path) -> Path:
    # Size + mtime identify the installed file without reading 100 MB; a reinstall makes a new copy.
    stat = gguf.stat()
    key = hashlib.sha256(f"{gen_cfg['name']}|{gguf.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return Path(cache_dir) / "generators" / f"{gen_cfg['name']}-{key.hexdigest()[:12]}"


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantize the GGUF once and store it as safetensors. save_pretrained refuses a model
    loaded from GGUF, so the weights go into a fresh model built from the same config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf.parent, gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = gguf_model.config
    # The copy holds plain float weights; a leftover gguf quantization_config would mislead loaders.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # the folder appears complete or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


DTYPES = ("auto", "float32", "bfloat16")


def resolve_dtype(name: str | None, device: str = "cpu") -> str:
    """The generator's weight dtype. auto: bfloat16 where the hardware computes it natively (a CUDA
    GPU with bf16, a CPU with AVX512-BF16 or AMX-BF16), else float32. On such a CPU bf16 halves the
    bytes each decoding step reads and doubles the matmul rate (measured 2-3x,
    bench/builder_throughput.py); elsewhere it is emulated and slower. The CPU's answer is
    devices.native_bf16, the one check the trainer's precision also reads: oneDNN's own
    (torch.ops.mkldnn._is_mkldnn_bf16_supported) says yes on any AVX512 CPU, so asking it would build
    another real-fake set (the dtype is in the set's key, spec.py) on such a CPU."""
    import torch

    from stilts_lab.devices import native_bf16

    name = name or "float32"
    if name not in DTYPES:
        raise ConfigError(f"generator.dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    if name != "auto":
        return name
    if str(device).startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if native_bf16() else "float32"


def load_generator(gen_cfg: Mapping, cache_dir: Path, device: str = "cpu"):
    """(model, tokenizer) ready for batched sampling: eval mode, left padding, a pad token, the
    weights in generator.dtype (resolved by resolve_dtype)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf(gen_cfg)
    if gguf is not None:
        source = converted_dir(gen_cfg, gguf, cache_dir)
        if not source.is_dir():
            # Parallel sweep jobs would each spend ~40 s converting; the lock makes one do it.
            with FileLock(str(source) + ".lock"):
                if not source.is_dir():
                    _convert_gguf(gguf, source)
    elif gen_cfg.get("hub_id"):
        source = gen_cfg["hub_id"]
    else:
        raise ConfigError(f"generator {gen_cfg.get('name')}: set generator.hub_id or install the package "
                          f"named by generator.embedded_package ({gen_cfg.get('embedded_package')})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=getattr(torch, resolve_dtype(gen_cfg.get("dtype"), device)))
    except OSError as e:
        raise ConfigError(f"generator {gen_cfg.get('name')}: cannot load {source} (embedded package "
                          f"{gen_cfg.get('embedded_package')} not installed; Hub unreachable?): {e}") from None

    # Left padding keeps every prompt's last token at the end, where generation continues.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    # Loading leaves ~500 MB of freed heap (the float32 file's tensors cast to dtype) that glibc keeps
    # resident: hand it back, so the generation phase starts from what is live (docs/performance.md).
    release_freed_memory()
    return model, tokenizer
