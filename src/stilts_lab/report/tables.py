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
    """Δ's interval: the two-level bootstrap when the arm pools several intermediate seeds,
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
            a, v = arm[SCORE].to_numpy(float), vanilla[SCORE].to_numpy(float)
            if len(a) and len(v):
                row.update(delta_mean=a.mean() - v.mean(), delta_max=a.max() - v.max())
                row["delta_mean_ci"] = delta_ci(arm, vanilla, "mean")
                row["delta_max_ci"] = delta_ci(arm, vanilla, "max")
            elif not len(a):
                row["no_delta"] = "no scored trials"
            elif (section["arm"] == _first(arm_all, "vanilla_arm")).any():
                row["no_delta"] = "no scored vanilla trials"
            else:
                row["no_delta"] = "no vanilla arm with these settings"
            # Pairs fill the same grid cell. A cell with several trials of one arm (a re-run that
            # differs only in settings that do not change results) contributes their mean.
            cells = pd.concat([arm.groupby("cell")[SCORE].mean().rename("arm"),
                               vanilla.groupby("cell")[SCORE].mean().rename("vanilla")],
                              axis=1, join="inner")
            row["paired"] = paired_tests((cells["arm"] - cells["vanilla"]).to_numpy(float))
            rows.append(row)
    return pd.DataFrame(rows)


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
