"""The report's tables as DataFrames: per arm, each intermediate arm against its vanilla arm, and
per level of a factor. stats.py computes; this decides which trials go into each array."""
from __future__ import annotations

import numpy as np
import pandas as pd

from stilts_lab.errors import StiltsError
from stilts_lab.report.arms import VANILLA, applies, arm_order, assign_arms, value_label, value_sort_key
from stilts_lab.report.collect import SCORE, sections
from stilts_lab.report.stats import (between_seed_share, bootstrap_delta_ci, bootstrap_mean_ci, paired_tests,
                                     two_level_delta_ci)


def _first(arm: pd.DataFrame, column: str):
    return arm[column].iloc[0]


def seed_groups(arm: pd.DataFrame) -> list[np.ndarray]:
    """The scored trials' scores of one arm, one array per intermediate seed (one for vanilla)."""
    scored = arm[arm["scored"]]
    return [g[SCORE].to_numpy(float) for _, g in scored.groupby("intermediate_seed", dropna=False)]


def delta_ci(arm: pd.DataFrame, vanilla: pd.DataFrame, statistic: str):
    """Δ's interval: the two-level bootstrap when either arm pools several intermediate seeds,
    the plain one otherwise (the same numbers as before seeds were an axis)."""
    a, v = seed_groups(arm), seed_groups(vanilla)
    if len(a) > 1 or len(v) > 1:
        return two_level_delta_ci(a, v, {"mean": np.nanmean, "max": np.nanmax}[statistic])
    return bootstrap_delta_ci(np.concatenate(a), np.concatenate(v), {"mean": np.mean, "max": np.max}[statistic])


def arm_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, target, arm): counts and score statistics over the scored trials."""
    rows = []
    for model, target, section in sections(df):
        for key in arm_order(section):
            arm = section[section["arm"] == key]
            scores = arm.loc[arm["scored"], SCORE].astype(float)
            n = len(scores)
            rows.append(dict(
                model=model, target=target, intermediate=_first(arm, "intermediate"),
                settings=_first(arm, "settings"), arm=key,
                metric_name=", ".join(sorted(set(arm["metric_name"].dropna()))),
                trials=n, failed=int((~arm["scored"]).sum()), diverged=int(arm["diverged"].sum()),
                mean=scores.mean() if n else None,
                std=scores.std(ddof=1) if n > 1 else None,
                median=scores.median() if n else None,
                min=scores.min() if n else None, max=scores.max() if n else None,
                intermediate_seeds=int(arm.loc[arm["scored"], "intermediate_seed"].nunique()),
                between_seed_share=between_seed_share(seed_groups(arm))))
    return pd.DataFrame(rows)


def comparison_table(df: pd.DataFrame) -> pd.DataFrame:
    """Each intermediate arm against the vanilla arm with the same shared settings."""
    rows = []
    for model, target, section in sections(df):
        scored = section[section["scored"]]
        for key in arm_order(section):
            arm_all = section[section["arm"] == key]
            name = _first(arm_all, "intermediate")
            if name == VANILLA:
                continue
            arm = scored[scored["arm"] == key]
            vanilla = scored[scored["arm"] == _first(arm_all, "vanilla_arm")]
            row = dict(model=model, target=target, intermediate=name, settings=_first(arm_all, "settings"),
                       arm=key, metric_name=", ".join(sorted(set(section["metric_name"].dropna()))),
                       intermediate_seeds=int(arm["intermediate_seed"].nunique()), no_delta="")
            row.update(delta(arm, vanilla))
            if not len(arm):
                row["no_delta"] = "no scored trials"
            elif not len(vanilla):
                row["no_delta"] = ("no scored vanilla trials" if (section["arm"] == _first(arm_all, "vanilla_arm")).any()
                                   else "no vanilla arm with these settings")
            rows.append(row)
    return pd.DataFrame(rows)


def delta(arm: pd.DataFrame, other: pd.DataFrame) -> dict:
    """`arm` against `other` (scored trials of each): delta_mean, delta_max and their intervals
    when both have trials, and `paired`, the tests over the grid cells both filled."""
    out = {}
    a, b = arm[SCORE].to_numpy(float), other[SCORE].to_numpy(float)
    if len(a) and len(b):
        out.update(delta_mean=a.mean() - b.mean(), delta_max=a.max() - b.max(),
                   delta_mean_ci=delta_ci(arm, other, "mean"), delta_max_ci=delta_ci(arm, other, "max"))
    # Pairs fill the same grid cell. A cell with several trials of one arm (a re-run that differs
    # only in settings that do not change results, or the arm's intermediate seeds) contributes their mean.
    cells = pd.concat([arm.groupby("cell")[SCORE].mean().rename("arm"),
                       other.groupby("cell")[SCORE].mean().rename("other")], axis=1, join="inner")
    out["paired"] = paired_tests((cells["arm"] - cells["other"]).to_numpy(float))
    return out


def factor_column(df: pd.DataFrame, key: str) -> str:
    for column in (key, f"config.{key}"):
        if column in df.columns:
            return column
    near = [c.removeprefix("config.") for c in df.columns if key.split(".")[-1] in c]
    raise StiltsError(f"--factor {key}: no such config key in the trials"
                      + (f" (did you mean {', '.join(near[:5])}?)" if near else ""))


def factor_table(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per (model, target, arm without the factor, factor value): n, mean, std, bootstrap 95% CI
    of the mean. The factor's levels are points on one line instead of arms of their own."""
    column = factor_column(df, key)
    lines = assign_arms(df, exclude=[column])
    # "null" where the factor does not concern a trial: vanilla has no intermediate.train_size.
    lines["value"] = lines[column].map(value_label).where(applies(column, lines), "null")
    scored = lines[lines["scored"]]
    rows = []
    for model, target, section in sections(scored):
        for line in arm_order(section):
            arm = section[section["arm"] == line]
            for label in sorted(set(arm["value"]), key=value_sort_key):
                scores = arm.loc[arm["value"] == label, SCORE].to_numpy(float)
                rows.append(dict(model=model, target=target, intermediate=_first(arm, "intermediate"),
                                 settings=_first(arm, "settings"), line=line, value=label,
                                 n=len(scores), mean=scores.mean(),
                                 std=scores.std(ddof=1) if len(scores) > 1 else None,
                                 ci=bootstrap_mean_ci(scores)))
    return pd.DataFrame(rows)
