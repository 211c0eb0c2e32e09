"""Which device a trainer config runs on, spelled once: the stages, the real-fake builder and
metrics.json all ask this module, so `accelerator: cuda` and `auto` mean the same everywhere."""
from __future__ import annotations

GPU_NAMES = ("gpu", "cuda")


def uses_gpu(accelerator) -> bool:
    """True when Lightning will train on a CUDA GPU: `gpu`/`cuda`, or `auto` with one present."""
    name = str(accelerator)
    if name in GPU_NAMES:
        return True
    if name == "auto":
        import torch
        return torch.cuda.is_available()
    return False


def torch_device(accelerator) -> str:
    """The torch device string for work done outside Lightning (generating real-fake endings)."""
    return "cuda" if uses_gpu(accelerator) else "cpu"
