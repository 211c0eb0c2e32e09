"""The report's statistics on simulated sweeps of known truth: family-wise error, interval coverage,
power and Δ max bias, at the verdict's shape and a larger one, next to the analyses they replaced
(unpaired, uncorrected, pooled maxima). What tests/test_calibration.py asserts, printed as a table.

    python bench/calibration.py [--reps 2000]
"""
from __future__ import annotations

import argparse

import numpy as np

from stilts_lab.report.inference import ALPHA, equal_budget_max_delta, holm
from stilts_lab.report.simulate import matrix_tests, synthetic_sweeps

TARGETS, ARMS, SD_RESIDUAL, SD_CELL, SD_CHECKPOINT = 3, 5, 0.015, 0.03, 0.02


def fwer(p: np.ndarray) -> float:
    return float((holm(p.reshape(len(p), -1)) < ALPHA).any(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=2000)
    reps = parser.parse_args().reps
    rng = np.random.default_rng(0)
    print(f"{reps} simulated transfer matrices of {TARGETS} targets x {ARMS} arms (15 tests per family, Holm); "
          f"sd residual {SD_RESIDUAL}, cell {SD_CELL}, checkpoint {SD_CHECKPOINT} where it varies\n")
    print("| shape (seeds x cells) | null | test | family-wise error | uncorrected | 95% coverage |")
    print("|---|---|---|---|---|---|")
    for seeds, cells in ((2, 6), (5, 36)):
        for sd_ckpt, scopes in ((0.0, ("cond",)), (SD_CHECKPOINT, ("cond", "task"))):
            a, v = synthetic_sweeps(rng, reps, TARGETS, ARMS, cells, seeds, sd_cell=SD_CELL,
                                    sd_checkpoint=sd_ckpt, sd_residual=SD_RESIDUAL)
            out = matrix_tests(a, v)
            for scope in scopes:
                p = out[f"{scope}_p"]
                if np.isnan(p).all():
                    continue
                cover = ((out[f"{scope}_low"] <= 0) & (out[f"{scope}_high"] >= 0)).mean()
                raw = float((p.reshape(reps, -1) < ALPHA).any(-1).mean())
                null = "no checkpoint effect" if sd_ckpt == 0 else "checkpoints vary"
                print(f"| {seeds} x {cells} | {null} | {scope} | {fwer(p):.3f} | {raw:.3f} | {cover:.3f} |")
    print("\n| shape | planted effect | starred (Holm) |\n|---|---|---|")
    for (seeds, cells), k in (((2, 6), 6), ((5, 36), 4)):
        se = SD_RESIDUAL * np.sqrt(1 / (cells * seeds) + 1 / cells)
        effect = np.zeros((TARGETS, ARMS))
        effect[0, 0] = k * se
        a, v = synthetic_sweeps(rng, reps, TARGETS, ARMS, cells, seeds, sd_cell=SD_CELL, sd_residual=SD_RESIDUAL,
                                effect=effect)
        starred = (holm(matrix_tests(a, v)["cond_p"].reshape(reps, -1)) < ALPHA)[:, 0].mean()
        print(f"| {seeds} x {cells} | {k} standard errors ({k * se:.4f}) | {starred:.3f} |")
    a, v = synthetic_sweeps(rng, reps * 2, 1, 1, 6, 2, sd_cell=SD_CELL, sd_residual=SD_RESIDUAL)
    equal = equal_budget_max_delta(a[:, 0, 0], v[:, 0]).ravel()   # (reps, cells, seeds) against (reps, cells, 1)
    pooled = a.reshape(len(a), -1).max(-1) - v.reshape(len(v), -1).max(-1)
    print(f"\nΔ max under no effect, 2 seeds x 6 cells ({reps * 2} sweeps): equal budgets {equal.mean():+.4f} "
          f"(3 standard errors: {3 * equal.std() / np.sqrt(len(equal)):.1e}); pooled 12 against 6 {pooled.mean():+.4f}")


if __name__ == "__main__":
    main()
