"""Where a trial ran: library versions and the device, recorded in metrics.json (timings are only
comparable on the same device and precision)."""
from __future__ import annotations

import platform

import lightning
import torch
import transformers
from omegaconf import DictConfig

from stilts_lab.devices import uses_gpu


def versions() -> dict:
    import datasets, hydra, torchmetrics
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "lightning": lightning.__version__,
            "torchmetrics": torchmetrics.__version__, "datasets": datasets.__version__,
            "hydra": hydra.__version__}


def cpu_name() -> str:
    try:  # platform.processor() is empty on most Linux machines
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def gpu_count(devices) -> int:
    """Lightning's `devices` as a number of GPUs: an int, a list of indices, or "auto" / -1 (all)."""
    if isinstance(devices, (list, tuple)) or hasattr(devices, "__len__") and not isinstance(devices, str):
        return len(devices)
    if str(devices) in ("auto", "-1"):
        return torch.cuda.device_count()
    return int(devices)


def device_info(cfg: DictConfig) -> dict:
    """What the trial ran on: timings are only comparable on the same device and precision."""
    accelerator = str(cfg.trainer.accelerator)
    # also asks CUDA: metrics.json is begun before check_device refuses a GPU trainer without one
    on_gpu = uses_gpu(accelerator) and torch.cuda.is_available()
    return {"accelerator": accelerator, "precision": str(cfg.trainer.precision),
            "name": torch.cuda.get_device_name(0) if on_gpu else cpu_name(),
            "count": gpu_count(cfg.trainer.devices) if on_gpu else 1,
            "cpu_threads": torch.get_num_threads(), "compile": cfg.trainer.get("compile")}
