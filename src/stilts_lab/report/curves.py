"""Tuning curves (Dodge et al. 2019, "Show Your Work"): the expected best dev score after n trials
of an arm's grid, n = 1 (the mean) up to the arm's trial count (near its max), with opda's
distribution-free simultaneous confidence bands (Lourie et al. 2024, "Show Your Work with
Confidence"). The paper's "mean up a lot, max up a little" is the curve's two ends.

The curve is the average tuning curve of the arm's empirical score distribution: E[max of n draws
with replacement from the arm's trials]. Its band is the average tuning curve of opda's CDF bands:
the lower CDF band (more mass high) gives the upper curve and vice versa.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from opda.nonparametric import EmpiricalDistribution

from stilts_lab.report.arms import arm_order
from stilts_lab.report.collect import SCORE, sections

# Lourie et al.'s choice: an 80% band is informative at a few dozen trials, a 95% one rarely is.
CONFIDENCE = 0.80
BAND_METHOD = "ld_equal_tailed"  # the tightest of opda's exact methods that is quick at this size
BAND_SEED = 0
# The bands need the support's bounds (a score can rise to b however few trials saw it).
METRIC_RANGE = {"accuracy": (0.0, 1.0), "f1": (0.0, 1.0), "macro_f1": (0.0, 1.0),
                "mcc": (-1.0, 1.0), "pearson": (-1.0, 1.0), "spearman": (-1.0, 1.0)}
TABLE_NS = (1, 3, 10)  # and the arm's trial count (or the target's equal budget, table_points)


def tuning_curve(scores: np.ndarray, metric: str, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per n = 1..len(scores): `expected_max` and its band `low`, `high` (NaN where the metric's
    range is unknown, so no distribution-free band exists)."""
    scores = np.asarray(scores, float)
    ns = np.arange(1, len(scores) + 1)
    curve = pd.DataFrame({"n": ns, "expected_max": EmpiricalDistribution(scores).average_tuning_curve(ns)})
    curve["low"] = curve["high"] = np.nan
    bounds = METRIC_RANGE.get(metric)
    # a score outside the range (a mislabelled metric) gets no band rather than a false one
    if bounds is not None and len(scores) >= 2 and bounds[0] <= scores.min() and scores.max() <= bounds[1]:
        with warnings.catch_warnings():
            # Dev scores are ratios of small integers, so ties are the rule: coverage is then
            # no longer exact (opda warns), which a report over a grid accepts.
            warnings.filterwarnings("ignore", message="Duplicates detected")
            upper_cdf_low, _, lower_cdf_high = EmpiricalDistribution.confidence_bands(
                scores, confidence, a=bounds[0], b=bounds[1], method=BAND_METHOD,
                generator=np.random.default_rng(BAND_SEED), n_jobs=1)
        curve["high"] = upper_cdf_low.average_tuning_curve(ns)
        curve["low"] = lower_cdf_high.average_tuning_curve(ns)
    return curve


def curve_table(df: pd.DataFrame) -> pd.DataFrame:
    """The tidy table every curve plot and the summary's table come from: one row per (model,
    target, arm, n) with expected_max, low, high, trials, and vanilla_arm (the key of the vanilla
    arm the arm is compared with, its reference in the plot)."""
    frames = []
    for model, target, section in sections(df):
        metric = ", ".join(sorted(set(section["metric_name"].dropna())))
        for key in arm_order(section):
            arm = section[(section["arm"] == key) & section["scored"]]
            if arm.empty:
                continue
            curve = tuning_curve(arm[SCORE].to_numpy(float), metric)
            curve.insert(0, "model", model)
            curve.insert(1, "target", target)
            curve.insert(2, "metric_name", metric)
            curve.insert(3, "intermediate", arm["intermediate"].iloc[0])
            curve.insert(4, "settings", arm["settings"].iloc[0])
            curve.insert(5, "arm", key)
            curve["trials"] = len(arm)
            curve["vanilla_arm"] = arm["vanilla_arm"].iloc[0]
            frames.append(curve)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def equal_budget(curves: pd.DataFrame) -> int:
    """n* for one target's curves: the smallest trial count among its arms. Arms are compared at
    equal n, since the expected max grows with n: the max of 12 trials beats the max of 6 with no
    effect at all."""
    return int(curves["trials"].min())


def table_points(curve: pd.DataFrame, budget: int | None = None) -> list[int]:
    """The n shown in summary.md for one arm: 1 and 3 where it has that many trials, and the
    target's equal budget (equal_budget); without a budget, 1, 3, 10 and all its trials."""
    trials = int(curve["trials"].iloc[0])
    if budget is None:
        return sorted({n for n in TABLE_NS if n <= trials} | {trials})
    return sorted({n for n in TABLE_NS[:2] if n <= trials} | {min(int(budget), trials)})


def band_text(row) -> str:
    if any(isinstance(x, float) and math.isnan(x) for x in (row["low"], row["high"])):
        return f"{row['expected_max']:.4f}"
    return f"{row['expected_max']:.4f} [{row['low']:.4f}, {row['high']:.4f}]"
