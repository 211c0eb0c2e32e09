"""Host memory: glibc's allocator made to give freed training memory back to the OS (issue 19, §4).

Training on the CPU allocates activations of a new size at every step (length-grouped batches), most of
them a few MB. glibc raises its mmap threshold each time such a block is freed (up to 32 MB), so later
blocks come from the heap, where freed pages stay resident: a 500-example multiple-choice stage peaked at
2.52 GB RSS. Two remedies, both trainer settings (conf/trainer/cpu.yaml, docs/performance.md):
- malloc_trim(0) after every n steps (`malloc_trim_every_n_steps`; n = 1: 2.13 GB). A trim itself costs
  ~0.1 ms, but the next step faults the released pages in again: with n = 1 the step ran at 0.83x a bare
  loop's (bench/step_profile.py), so the default trims only after each dev pass;
- a fixed mmap threshold (`malloc_mmap_threshold`): every block above it is its own mapping, unmapped on
  free: 1.90 GB, but 44% slower there (each step faults its pages in afresh).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>; setting it also turns off the dynamic threshold


def set_mmap_threshold(threshold: int | None) -> bool:
    """Apply `threshold` (bytes) to this process; True when glibc took it. No-op (False) off glibc, for
    None, and when the user set MALLOC_MMAP_THRESHOLD_ themselves (glibc read it at start-up)."""
    if threshold is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    mallopt = getattr(_libc(), "mallopt", None)  # musl and other libcs have none
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1


# glibc's default threshold (128 KiB). Setting any value turns the dynamic threshold off for good, so
# "restored" means this default, fixed: the closest glibc allows to a process that never set one.
DEFAULT_MMAP_THRESHOLD = 128 * 1024


def restore_mmap_threshold() -> bool:
    mallopt = getattr(_libc(), "mallopt", None)
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD) == 1


@functools.cache  # find_library runs ldconfig: once per process, not once per training step
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> bool:
    """glibc's malloc_trim(0): the free pages inside the heap (not only at its top) go back to the OS.
    Milliseconds; True when glibc released something."""
    trim = getattr(_libc(), "malloc_trim", None)
    return bool(trim(0)) if trim is not None else False


def _child_setup(level: int, threads: int) -> None:
    import logging

    import torch

    from stilts_lab.logging_setup import quiet_library_notes

    logging.basicConfig(level=level, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    quiet_library_notes()   # as in the parent's trial: no fresh-head report, no srun hint
    torch.set_num_threads(threads)  # a sweep's share of the cores (trainer.num_threads), not all of them


def run_isolated(fn, *args, **kwargs):
    """fn(*args, **kwargs) in a spawned child process; returns its (picklable) result and raises its exception.

    Whatever fn allocates (a generator's weights, oneDNN's primitive caches, the heap that sampling
    fragmented, pages pinned by small live objects that malloc_trim cannot free) goes back to the OS when
    the child exits, which no trim in this process achieves. The child logs to stderr at this process's
    level and uses as many torch threads as this process."""
    import logging
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    init = (logging.getLogger().getEffectiveLevel(), torch.get_num_threads())
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_child_setup,
                             initargs=init) as pool:
        return pool.submit(fn, *args, **kwargs).result()
