"""The descriptive intervals of the report: a bootstrap interval of one arm's mean (the factor
table). The comparisons between arms, their tests and their error control live in inference.py.

Every function says "n/a" (None plus a reason) rather than inventing a value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 10_000
# Fixed, and re-seeded for every interval, so the report is deterministic and adding an
# intermediate task to a sweep does not move the intervals of the others.
BOOTSTRAP_SEED = 0


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


def bootstrap_mean_ci(scores: np.ndarray, resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> Interval:
    """95% percentile interval of the mean of one arm."""
    scores = np.asarray(scores, float)
    if note := _too_few(scores):
        return Interval(None, None, note)
    ci = stats.bootstrap((scores,), np.mean, vectorized=True, n_resamples=resamples,
                         method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return Interval(float(ci.low), float(ci.high))
