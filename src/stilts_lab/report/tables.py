"""The report's tables as DataFrames: per arm, each intermediate arm against its vanilla arm, and
per level of a factor. stats.py computes; this decides which trials go into each array."""
from __future__ import annotations

import numpy as np
import pandas as pd

from stilts_lab.errors import StiltsError
from stilts_lab.report.arms import VANILLA, applies, arm_order, assign_arms, value_label, value_sort_key
from stilts_lab.report.collect import SCORE, sections
from stilts_lab.report.inference import BlockDesign, compare, max_interval, permutation_max_test
from stilts_lab.report.stats import bootstrap_mean_ci

# The equivalence margin of TOST, in the metric's units: "no effect" is said only inside +-MARGIN.
MARGIN = 0.01


def _first(arm: pd.DataFrame, column: str):
    return arm[column].iloc[0]


def trial_columns(trials: pd.DataFrame) -> list:
    """A trial's column in the block design: its arm and checkpoint (vanilla: one column)."""
    # a comprehension, not Series.map: map turns the None of vanilla's seed back into NaN, and NaN != NaN
    return [(arm, None if pd.isna(seed) else str(seed))
            for arm, seed in zip(trials["arm"], trials["intermediate_seed"])]


def fit_experiment(trials: pd.DataFrame):
    """(design, column effects, residual variance) of one experiment: the scored trials of a vanilla
    arm and every arm compared with it (same model, target, shared settings), cells as blocks."""
    design = BlockDesign(list(trials["cell"]), trial_columns(trials))
    effects, s2 = design.fit(trials[SCORE].to_numpy(float))
    return design, effects, s2


def experiments(section: pd.DataFrame) -> dict:
    """{vanilla arm key: fit_experiment(...)} for a (model, target) section's scored trials."""
    scored = section[section["scored"]]
    return {key: fit_experiment(group) for key, group in scored.groupby("vanilla_arm", sort=False)}


def complete_layout(arm: pd.DataFrame, other: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of shape (cells, checkpoints): the cells where every checkpoint of both arms has a
    score (a repeated trial contributes its mean), for the equal-budget maximum and its
    permutation test, which need a balanced layout."""
    def pivot(trials):
        frame = trials.assign(column=trial_columns(trials))
        return frame.pivot_table(index="cell", columns="column", values=SCORE, aggfunc="mean")
    a, b = pivot(arm), pivot(other)
    cells = a.dropna().index.intersection(b.dropna().index)
    return a.loc[cells].to_numpy(float), b.loc[cells].to_numpy(float)


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
                trials=n, failed=int((~arm["scored"]).sum()), at_baseline=int(arm["at_baseline"].sum()),
                mean=scores.mean() if n else None,
                std=scores.std(ddof=1) if n > 1 else None,
                median=scores.median() if n else None,
                min=scores.min() if n else None, max=scores.max() if n else None,
                intermediate_seeds=int(arm.loc[arm["scored"], "intermediate_seed"].nunique())))
    return pd.DataFrame(rows)


def comparison_table(df: pd.DataFrame, margin: float = MARGIN) -> pd.DataFrame:
    """Each intermediate arm against the vanilla arm with the same shared settings (delta())."""
    rows = []
    for model, target, section in sections(df):
        scored = section[section["scored"]]
        fits = experiments(section)
        for key in arm_order(section):
            arm_all = section[section["arm"] == key]
            name = _first(arm_all, "intermediate")
            if name == VANILLA:
                continue
            vanilla_key = _first(arm_all, "vanilla_arm")
            arm = scored[scored["arm"] == key]
            vanilla = scored[scored["arm"] == vanilla_key]
            row = dict(model=model, target=target, intermediate=name, settings=_first(arm_all, "settings"),
                       arm=key, metric_name=", ".join(sorted(set(section["metric_name"].dropna()))),
                       intermediate_seeds=int(arm["intermediate_seed"].nunique()), no_delta="")
            if not len(arm):
                row["no_delta"] = "no scored trials"
            elif not len(vanilla):
                row["no_delta"] = ("no scored vanilla trials" if (section["arm"] == vanilla_key).any()
                                   else "no vanilla arm with these settings")
            row.update(delta(arm, vanilla, fits.get(vanilla_key), margin))
            rows.append(row)
    return pd.DataFrame(rows)


def delta(arm: pd.DataFrame, other: pd.DataFrame, fit, margin: float = MARGIN) -> dict:
    """`arm` minus `other` (scored trials of each, one experiment `fit`): Δ mean from the block
    design with its conditional and task-level tests and TOST, the claim's scope (task level where
    both arms allow it, else conditional on these checkpoints), and Δ max at equal budgets with its
    permutation test and interval over the cells complete in both arms. Raw p-values: the report
    adjusts them over each family (claims.py)."""
    out = dict(cells=0, budget_n=None, scope="", delta_mean=None, delta_mean_low=None, delta_mean_high=None,
               delta_mean_se=None, delta_mean_df=None, delta_mean_p=None, cond_p=None, cond_low=None, cond_high=None,
               task_p=None, tost_p=None, cond_tost_p=None,
               task_tost_p=None, delta_max=None, delta_max_low=None,
               delta_max_high=None, delta_max_p=None)
    if not len(arm) or not len(other) or fit is None:
        return out
    design, effects, s2 = fit
    test = compare(design, effects, s2, list(dict.fromkeys(trial_columns(arm))), list(dict.fromkeys(trial_columns(other))),
                   margin=margin)
    scope = "task" if np.isfinite(test["task_p"]) else "cond"
    shared = set(arm["cell"]) & set(other["cell"])
    out.update(cells=len(shared), scope=scope, delta_mean=_num(test["delta"]),
               delta_mean_low=_num(test[f"{scope}_low"]), delta_mean_high=_num(test[f"{scope}_high"]),
               delta_mean_se=_num(test[f"{scope}_se"]), delta_mean_df=_num(test[f"{scope}_df"]),
               delta_mean_p=_num(test[f"{scope}_p"]), cond_p=_num(test["cond_p"]), cond_low=_num(test["cond_low"]),
               cond_high=_num(test["cond_high"]), task_p=_num(test["task_p"]),
               tost_p=_num(test[f"{scope}_tost_p"]), cond_tost_p=_num(test["cond_tost_p"]),
               task_tost_p=_num(test["task_tost_p"]))
    a, b = complete_layout(arm, other)
    if len(a) >= 2:
        observed, p = permutation_max_test(a, b)
        low, high = max_interval(a, b)
        out.update(budget_n=len(a), delta_max=float(observed), delta_max_p=float(p),
                   delta_max_low=_num(low), delta_max_high=_num(high))
    return out


def _num(x) -> float | None:
    # Dev scores are ratios of small integers: rounding the fit's float noise (1e-17 for "no
    # difference") lets equal Δs tie, as they must for a ranking, without hiding a real difference.
    x = round(float(x), 12) + 0.0   # + 0.0: no "-0.0000"
    return x if np.isfinite(x) else None


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
