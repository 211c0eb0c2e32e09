"""Process-wide settings a stage asks for, held for that stage only.

torch's thread count, its float32 matmul precision and glibc's mmap threshold belong to the process,
not to a trial: set by one trial, they would stay for the next one in the same process (a joblib
worker, a notebook, the test suite), which would then run in TF32 while its metrics.json says null.
stage_settings_scope() applies a stage's values and restores the process's on the way out."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Mapping

import torch

from stilts_lab.memory import restore_mmap_threshold, set_mmap_threshold


@contextmanager
def stage_settings_scope(trainer_cfg: Mapping, on_gpu: bool):
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    threshold_set = False
    try:
        if trainer_cfg.get("num_threads"):
            torch.set_num_threads(int(trainer_cfg["num_threads"]))
        threshold_set = set_mmap_threshold(trainer_cfg.get("malloc_mmap_threshold"))  # before the allocations
        if on_gpu and trainer_cfg.get("matmul_precision"):
            torch.set_float32_matmul_precision(trainer_cfg["matmul_precision"])  # TF32 for what stays fp32
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)
        if threshold_set:
            restore_mmap_threshold()
