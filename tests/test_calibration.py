"""The report's statistics measured on synthetic sweeps whose truth is known (report/simulate.py).

Each test runs the report's own functions (inference.py, through simulate.matrix_tests, which builds
the same block design the report fits) on thousands of sweeps at once. Families are a transfer
matrix of 3 targets x 5 arms = 15 cells, adjusted with Holm, as the report does. Tolerances are 3
Monte-Carlo standard errors. Two shapes: the verdict's (2 intermediate seeds x 6 cells) and a
larger one (5 seeds x 36 cells). Seeds are fixed, so a failure is a real change, not bad luck.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from stilts_lab.report.inference import (ALPHA, BlockDesign, adjust, equal_budget_max_delta, expected_max, holm,
                                         max_interval, permutation_max_test)
from stilts_lab.report.simulate import matrix_tests, synthetic_sweeps

TARGETS, ARMS = 3, 5
VERDICT, LARGE = (2, 6), (5, 36)          # (intermediate seeds, cells)
SD_RESIDUAL, SD_CELL, SD_CHECKPOINT = 0.015, 0.03, 0.02


def tolerance(p: float, n: int) -> float:
    return 3 * np.sqrt(p * (1 - p) / n)


def family_wise_error(p: np.ndarray) -> float:
    """Share of replicates (first axis) with any Holm-adjusted p < alpha in their family (the rest)."""
    flat = p.reshape(len(p), -1)
    return float((holm(flat) < ALPHA).any(axis=-1).mean())


def covered(out: dict, scope: str, truth: float = 0.0) -> np.ndarray:
    return (out[f"{scope}_low"] <= truth) & (truth <= out[f"{scope}_high"])


@pytest.mark.parametrize("shape,reps", [(VERDICT, 2000), (LARGE, 600)])
def test_conditional_null_family_wise_error_and_coverage(shape, reps):
    """Null for a claim about these checkpoints: no arm effect, no checkpoint variance."""
    seeds, cells = shape
    a, v = synthetic_sweeps(np.random.default_rng(1), reps, TARGETS, ARMS, cells, seeds,
                            sd_cell=SD_CELL, sd_residual=SD_RESIDUAL)
    out = matrix_tests(a, v)
    assert family_wise_error(out["cond_p"]) <= ALPHA + tolerance(ALPHA, reps)
    coverage = covered(out, "cond").mean()
    assert 0.92 <= coverage <= 0.98, coverage
    # without the correction the same tests star a family far more often than 5%: the test can fail
    assert float((out["cond_p"].reshape(reps, -1) < ALPHA).any(-1).mean()) > 0.2


def test_task_level_null_family_wise_error_and_coverage():
    """Null for a claim about the intermediate task: checkpoints really differ, the task adds nothing.
    The conditional test is then wrong by design (these checkpoints do differ from vanilla); the
    task-level one must hold its level."""
    seeds, cells = LARGE
    reps = 600
    a, v = synthetic_sweeps(np.random.default_rng(2), reps, TARGETS, ARMS, cells, seeds, sd_cell=SD_CELL,
                            sd_checkpoint=SD_CHECKPOINT, sd_residual=SD_RESIDUAL)
    out = matrix_tests(a, v)
    assert family_wise_error(out["task_p"]) <= ALPHA + tolerance(ALPHA, reps)
    coverage = covered(out, "task").mean()
    assert 0.92 <= coverage <= 0.98, coverage
    assert family_wise_error(out["cond_p"]) > 0.5   # the checkpoints' spread is not the task's effect


def test_two_seeds_carry_no_task_level_claim():
    """With 2 checkpoints per arm the task-level test would have 1 df: the report does not make it."""
    a, v = synthetic_sweeps(np.random.default_rng(3), 10, 1, 2, 6, 2, sd_checkpoint=SD_CHECKPOINT)
    out = matrix_tests(a, v)
    assert np.isnan(out["task_p"]).all() and np.isfinite(out["cond_p"]).all()


@pytest.mark.parametrize("shape,standard_errors,reps", [(VERDICT, 6, 1500), (LARGE, 4, 500)])
def test_planted_effect_is_starred(shape, standard_errors, reps):
    """One arm of the 15 gets a true effect of k standard errors of its paired cell mean; the rest
    are null. It must survive Holm in >= 80% of replicates."""
    seeds, cells = shape
    se = SD_RESIDUAL * np.sqrt(1 / (cells * seeds) + 1 / cells)
    effect = np.zeros((TARGETS, ARMS))
    effect[1, 2] = standard_errors * se
    a, v = synthetic_sweeps(np.random.default_rng(4), reps, TARGETS, ARMS, cells, seeds, sd_cell=SD_CELL,
                            sd_residual=SD_RESIDUAL, effect=effect)
    out = matrix_tests(a, v)
    starred = holm(out["cond_p"].reshape(reps, -1)) < ALPHA
    assert starred[:, 1 * ARMS + 2].mean() >= 0.80
    # the unpaired analysis (cells not removed) on the same sweeps: the cell spread swamps the effect
    arm_mean, van_mean = a.mean(axis=(-2, -1)), v.mean(axis=(-2, -1))[..., None]
    diff = (arm_mean - van_mean)[:, 1, 2]
    pooled_sd = np.sqrt((a[:, 1, 2].reshape(reps, -1).var(-1, ddof=1) / (cells * seeds)
                         + v[:, 1, :, 0].var(-1, ddof=1) / cells))
    unpaired_p = 2 * stats.norm.sf(np.abs(diff / pooled_sd))
    assert (unpaired_p < ALPHA / (TARGETS * ARMS)).mean() < 0.80


def test_equal_budget_max_is_unbiased_where_pooling_is_not():
    """Δ max under no effect: the pooled max of 12 trials against vanilla's 6 favours the arm; at
    equal budgets (each checkpoint's expected best of its 6 cells) the mean over null cells is 0."""
    seeds, cells = VERDICT
    reps = 4000
    a, v = synthetic_sweeps(np.random.default_rng(5), reps, 1, 1, cells, seeds, sd_cell=SD_CELL,
                            sd_residual=SD_RESIDUAL)
    equal = equal_budget_max_delta(a[:, 0, 0], v[:, 0]).ravel()   # (reps, cells, seeds) against (reps, cells, 1)
    pooled = (a.reshape(reps, -1).max(-1) - v.reshape(reps, -1).max(-1))
    bound = 3 * equal.std() / np.sqrt(reps)
    assert abs(equal.mean()) <= bound
    assert pooled.mean() > 3 * pooled.std() / np.sqrt(reps)


def test_permutation_max_test_holds_its_level():
    seeds, cells = VERDICT
    reps = 300
    a, v = synthetic_sweeps(np.random.default_rng(6), reps, TARGETS, ARMS, cells, seeds, sd_cell=SD_CELL,
                            sd_residual=SD_RESIDUAL)
    out = matrix_tests(a, v, max_test=True, perms=1000)
    assert family_wise_error(out["max_p"]) <= ALPHA + tolerance(ALPHA, reps)
    assert abs(out["delta_max"].mean()) <= 3 * out["delta_max"].std() / np.sqrt(out["delta_max"].size)


def test_max_interval_agrees_with_its_test():
    """The interval inverts the test: it excludes 0 exactly when the test rejects at 5%."""
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.03):
        a, v = synthetic_sweeps(rng, 1, 1, 1, 6, 2, sd_cell=SD_CELL, effect=shift)
        a, v = a[0, 0, 0], v[0, 0]
        _, p = permutation_max_test(a, v)
        low, high = max_interval(a, v)
        assert low <= float(equal_budget_max_delta(a, v)) <= high
        assert (low > 0 or high < 0) == (float(p) <= ALPHA)


def test_expected_max_is_dodges_formula():
    """E[best of n] from 4 values with replacement, by enumerating all 4^2 draws."""
    values = np.array([0.5, 0.7, 0.6, 0.8])
    draws = [max(x, y) for x in values for y in values]
    assert expected_max(values, 2) == pytest.approx(np.mean(draws))
    assert expected_max(values, 1) == pytest.approx(values.mean())


def test_block_design_is_the_paired_t_when_balanced():
    """One arm against vanilla with one checkpoint: the block design's t test is the paired t test."""
    rng = np.random.default_rng(8)
    cells = 6
    arm, van = rng.normal(0.6, 0.03, cells), rng.normal(0.58, 0.03, cells)
    design = BlockDesign(list(range(cells)) * 2, ["a"] * cells + ["v"] * cells)
    effects, s2 = design.fit(np.concatenate([arm, van]))
    from stilts_lab.report.inference import compare
    out = compare(design, effects, s2, ["a"], ["v"])
    assert out["delta"] == pytest.approx((arm - van).mean())
    assert out["cond_p"] == pytest.approx(stats.ttest_rel(arm, van).pvalue)


def test_holm_matches_statsmodels():
    p = np.random.default_rng(9).uniform(0, 0.1, (20, 15))
    assert np.allclose(holm(p), adjust(p, "holm"))
    assert (adjust(p, "bh") <= adjust(p, "holm") + 1e-12).all()   # BH is never stricter
