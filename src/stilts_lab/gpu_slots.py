"""One GPU per parallel worker: with the joblib launcher on a machine with several GPUs, every trial
would otherwise land on cuda:0 while the others idle.

Each worker process claims the lowest free slot (a file lock it holds until it exits) under a folder
shared by the command's workers, and sees only GPU slot % count through CUDA_VISIBLE_DEVICES, set
before CUDA starts in that process. With more workers than GPUs the slots wrap around, so the GPUs
are shared evenly; a worker that finishes frees its slot for the next. One GPU: nothing to choose
(several workers share it, as conf/hydra/launcher/parallel.yaml says)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from filelock import FileLock, Timeout

_claimed: tuple[FileLock, int] | None = None   # held for the life of this worker process


def visible_gpus() -> list[str]:
    """The GPUs this command may use: CUDA_VISIBLE_DEVICES where set, else what nvidia-smi lists
    (asked without importing torch, whose device count, once read, would not see the change)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def claim_slot(lock_dir: Path) -> int:
    """The lowest slot no live worker holds; this process keeps holding it (a second call returns it)."""
    global _claimed
    if _claimed is not None:
        return _claimed[1]
    lock_dir.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        lock = FileLock(str(lock_dir / f"slot{slot}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            slot += 1
            continue
        _claimed = (lock, slot)
        return slot


def assign_gpu(lock_dir: Path, gpus: list[str] | None = None) -> str | None:
    """Point this worker at its own GPU (CUDA_VISIBLE_DEVICES); returns it, or None with fewer than 2."""
    gpus = visible_gpus() if gpus is None else gpus
    if len(gpus) < 2:
        return None
    gpu = gpus[claim_slot(lock_dir) % len(gpus)]
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu
