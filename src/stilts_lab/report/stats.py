"""The statistics behind the report: bootstrap intervals and paired tests over trial scores.

Plain numpy/scipy on arrays of scores, so they can be checked by hand; tables.py decides what
goes into each array. Every function says "n/a" (None plus a reason) rather than inventing a value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

RESAMPLES = 10_000
# Fixed, and re-seeded for every interval, so the report is deterministic and adding an
# intermediate task to a sweep does not move the intervals of the others.
BOOTSTRAP_SEED = 0
# Dev scores are ratios of small integers (correct / total); rounding differences here removes
# float noise (0.6 - 0.5 != 0.7 - 0.6) so equal differences tie, without hiding a real difference.
DIFF_DECIMALS = 10


@dataclass
class Interval:
    """A 95% bootstrap interval, or None with the reason there is none."""
    low: float | None
    high: float | None
    note: str = ""  # why low/high are None; empty when they are numbers


def _too_few(*samples: np.ndarray) -> str:
    # scipy.stats.bootstrap refuses a sample of one as well: resampling one value gives a
    # zero-width "interval" that says nothing about the spread.
    return "needs 2+ trials per arm" if min(len(s) for s in samples) < 2 else ""


def bootstrap_delta_ci(arm: np.ndarray, vanilla: np.ndarray, statistic: Callable,
                       resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """95% percentile interval of statistic(arm) - statistic(vanilla), resampling the trials of
    each arm independently with replacement (the arms are separate sweeps, not paired draws)."""
    arm, vanilla = np.asarray(arm, float), np.asarray(vanilla, float)
    if note := _too_few(arm, vanilla):
        return Interval(None, None, note)

    def delta(a, v, axis):
        return statistic(a, axis=axis) - statistic(v, axis=axis)

    # Percentile, not scipy's default BCa: BCa's jackknife is meaningless for the max of a few trials.
    ci = stats.bootstrap((arm, vanilla), delta, paired=False, vectorized=True, n_resamples=resamples,
                         method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return Interval(float(ci.low), float(ci.high))


def bootstrap_mean_ci(scores: np.ndarray, resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> Interval:
    """95% percentile interval of the mean of one arm."""
    scores = np.asarray(scores, float)
    if note := _too_few(scores):
        return Interval(None, None, note)
    ci = stats.bootstrap((scores,), np.mean, vectorized=True, n_resamples=resamples,
                         method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return Interval(float(ci.low), float(ci.high))


@dataclass
class PairedTests:
    pairs: int
    mean_diff: float | None
    wilcoxon_p: float | None
    wilcoxon_note: str  # why wilcoxon_p is None; empty when it is a number
    ttest_p: float | None
    ttest_note: str


def paired_tests(diffs: np.ndarray) -> PairedTests:
    """Wilcoxon signed-rank and paired t-test on per-cell differences (arm minus vanilla)."""
    diffs = np.round(np.asarray(diffs, float), DIFF_DECIMALS)
    n = len(diffs)
    if n < 2:
        reason = "no matching pairs" if n == 0 else "only 1 pair"
        return PairedTests(n, float(diffs[0]) if n else None, None, reason, None, reason)

    if np.all(diffs == 0):
        wilcoxon_p, wilcoxon_note = None, "all differences are zero"
    else:
        wilcoxon_p, wilcoxon_note = float(stats.wilcoxon(diffs).pvalue), ""

    if np.all(diffs == diffs[0]):
        # The t statistic is infinite (or 0/0): any p-value printed would be an artefact.
        ttest_p, ttest_note = None, "differences have no spread"
    else:
        ttest_p, ttest_note = float(stats.ttest_1samp(diffs, 0.0).pvalue), ""
    return PairedTests(n, float(diffs.mean()), wilcoxon_p, wilcoxon_note, ttest_p, ttest_note)


def _two_level_resample(groups: list[np.ndarray], statistic: Callable, resamples: int,
                        rng: np.random.Generator) -> np.ndarray:
    """`resamples` values of statistic over a two-level resample: draw as many groups as there are,
    with replacement, then each drawn group's trials with replacement. Groups of unequal size are
    padded with NaN, so `statistic` must ignore NaN (np.nanmean, np.nanmax)."""
    k, width = len(groups), max(len(g) for g in groups)
    padded = np.full((k, width), np.nan)
    for i, g in enumerate(groups):
        padded[i, :len(g)] = g
    sizes = np.array([len(g) for g in groups])
    picked = rng.integers(0, k, size=(resamples, k))                       # which groups
    within = (rng.random((resamples, k, width)) * sizes[picked][..., None]).astype(int)  # which trials
    draws = padded[picked[..., None], within]
    # a drawn group contributes as many trials as it has: the rest of its row is padding
    draws[np.arange(width)[None, None, :] >= sizes[picked][..., None]] = np.nan
    return statistic(draws.reshape(resamples, k * width), axis=1)


def two_level_delta_ci(arm_groups: list[np.ndarray], vanilla_groups: list[np.ndarray],
                       statistic: Callable, resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> Interval:
    """95% percentile interval of statistic(arm) - statistic(vanilla) when an arm's trials come
    from several intermediate checkpoints (groups, one per intermediate seed): each arm is resampled
    on two levels, seeds then trials within each, so the interval carries the checkpoint-to-
    checkpoint spread that pooling the trials would hide. `statistic` must ignore NaN."""
    arm_groups = [np.asarray(g, float) for g in arm_groups if len(g)]
    vanilla_groups = [np.asarray(g, float) for g in vanilla_groups if len(g)]
    if note := _too_few(np.concatenate(arm_groups), np.concatenate(vanilla_groups)):
        return Interval(None, None, note)
    rng = np.random.default_rng(seed)
    deltas = (_two_level_resample(arm_groups, statistic, resamples, rng)
              - _two_level_resample(vanilla_groups, statistic, resamples, rng))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return Interval(float(low), float(high))


def between_seed_share(groups: list[np.ndarray]) -> float | None:
    """The share of an arm's score variance that lies between intermediate seeds: the one-way
    random-effects (ANOVA) variance components, sigma_b^2 / (sigma_b^2 + sigma_w^2), with
    sigma_w^2 the within-seed mean square, sigma_b^2 = (MSB - MSW) / n0 clipped at 0, and n0 the
    usual group size for unequal groups. None with fewer than 2 seeds or no within-seed spread
    to compare against (every seed a single trial)."""
    groups = [np.asarray(g, float) for g in groups if len(g)]
    sizes = np.array([len(g) for g in groups])
    k, n = len(groups), int(sizes.sum())
    if k < 2 or n - k < 1:
        return None
    grand = np.concatenate(groups).mean()
    msb = sum(m * (g.mean() - grand) ** 2 for m, g in zip(sizes, groups)) / (k - 1)
    msw = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k)
    n0 = (n - (sizes ** 2).sum() / n) / (k - 1)
    between = max(0.0, (msb - msw) / n0)
    total = between + msw
    return float(between / total) if total > 0 else 0.0
