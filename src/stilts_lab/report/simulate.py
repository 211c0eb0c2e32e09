"""Synthetic sweeps whose truth is known, and the report's tests applied to them in one vectorised
call: what tests/test_calibration.py measures the report's error rates, coverage and power with.

A trial's score = cell effect (shared by every arm of a target: target seed x rate x ...) + its
checkpoint's effect (intermediate arms only) + the arm's true effect + residual noise.
"""
from __future__ import annotations

import numpy as np

from stilts_lab.report.inference import (ALPHA, BlockDesign, compare, equal_budget_max_delta,
                                         permutation_max_test)


def synthetic_sweeps(rng: np.random.Generator, reps: int, targets: int, arms: int, cells: int, checkpoints: int,
                     sd_cell: float = 0.03, sd_checkpoint: float = 0.0, sd_residual: float = 0.015,
                     effect: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(a, v): a of shape (reps, targets, arms, cells, checkpoints), the intermediate arms, each with
    its own checkpoints and true effect (`effect`: scalar or (targets, arms)); v of shape
    (reps, targets, cells, 1), each target's vanilla arm, which every arm of the target is compared with."""
    cell = rng.normal(0, sd_cell, (reps, targets, 1, cells, 1))
    ckpt = rng.normal(0, sd_checkpoint, (reps, targets, arms, 1, checkpoints))
    effect = np.broadcast_to(np.asarray(effect, float), (targets, arms))[None, :, :, None, None]
    noise = rng.normal(0, sd_residual, (reps, targets, arms, cells, checkpoints))
    a = 0.6 + cell + ckpt + effect + noise
    v = 0.6 + cell[:, :, 0] + rng.normal(0, sd_residual, (reps, targets, cells, 1))
    return a, v


def matrix_tests(a: np.ndarray, v: np.ndarray, alpha: float = ALPHA, margin: float | None = None,
                 max_test: bool = False, perms: int = 2_000) -> dict:
    """Every arm of every target against its vanilla, as the report tests a transfer matrix: one
    BlockDesign per target over vanilla and all its arms. Returns compare()'s arrays with shape
    (reps, targets, arms), plus delta_max and max_p (the permutation test) when `max_test`."""
    reps, targets, arms, cells, k = a.shape
    labels_cell = list(range(cells)) + [c for _ in range(arms) for c in range(cells) for _ in range(k)]
    labels_col = ["vanilla"] * cells + [(j, kk) for j in range(arms) for _ in range(cells) for kk in range(k)]
    design = BlockDesign(labels_cell, labels_col)
    y = np.concatenate([v[..., 0], a.reshape(reps, targets, -1)], axis=-1)   # (reps, targets, n)
    effects, s2 = design.fit(y)
    results = [compare(design, effects, s2, [(j, kk) for kk in range(k)], ["vanilla"], alpha, margin)
               for j in range(arms)]
    out = {key: np.stack([np.broadcast_to(r[key], (reps, targets)) for r in results], axis=-1)
           for key in results[0] if not key.startswith("checkpoints")}
    if max_test:
        vb = np.broadcast_to(v[:, :, None], (reps, targets, arms, cells, 1))
        out["delta_max"], out["max_p"] = permutation_max_test(a, vb, perms)
        assert np.allclose(out["delta_max"], equal_budget_max_delta(a, vb))
    return out
