"""Families of tests, their multiplicity adjustment, and the words each claim earns.

A family is fixed before looking (STATS.md): per model, the transfer matrix's Δ mean cells, its Δ max
cells, the contrasts' Δ mean, the contrasts' Δ max, and "is the transfer target-specific?" (one
heterogeneity test per intermediate task). Holm by default, Benjamini-Hochberg on request. A star
means the adjusted test; the printed intervals are the unadjusted 95% ones, labelled so, with the
adjusted p beside them.

Words, generated from the tests, never written by hand:
- "higher" / "lower": the adjusted test rejects Δ = 0;
- "equivalent (|Δ| < margin)": TOST passes after the same adjustment;
- "inconclusive": neither. Never "no effect" from a test that did not decide.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from stilts_lab.report.arms import arm_label
from stilts_lab.report.inference import ALPHA, adjust

CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
SCOPE = {"task": "task level (checkpoints resampled)", "cond": "these checkpoints"}


def _adjusted(p: pd.Series, correction: str) -> pd.Series:
    values = pd.to_numeric(p, errors="coerce").to_numpy(float)
    return pd.Series(adjust(values[None, :], correction)[0] if len(values) else values, index=p.index)


def adjust_families(table: pd.DataFrame, correction: str = "holm", alpha: float = ALPHA) -> pd.DataFrame:
    """Adds delta_{mean,max}_p_adj and _significant, tost_p_adj, equivalent and verdict to a table of
    comparisons (tables.comparison_table) or contrasts; each model's rows are one family per statistic."""
    if table.empty:
        return table
    table = table.copy()
    for stat in ("mean", "max"):
        table[f"delta_{stat}_p_adj"] = np.nan
    table["tost_p_adj"] = np.nan
    for _, rows in table.groupby("model", sort=False):
        for column in ("delta_mean_p", "delta_max_p", "tost_p"):
            target = column.replace("_p", "_p_adj")
            table.loc[rows.index, target] = _adjusted(rows[column], correction)
    for stat in ("mean", "max"):
        table[f"delta_{stat}_significant"] = table[f"delta_{stat}_p_adj"] < alpha
    table["equivalent"] = (table["tost_p_adj"] < alpha) & ~table["delta_mean_significant"]
    table["verdict"] = [verdict(r) for r in table.to_dict("records")]
    return table


def verdict(r: dict) -> str:
    if r.get("delta_mean") is None or pd.isna(r.get("delta_mean")):
        return "n/a"
    if r["delta_mean_significant"]:
        return "higher" if r["delta_mean"] > 0 else "lower"
    return "equivalent" if r["equivalent"] else "inconclusive"


def heterogeneity(comparisons: pd.DataFrame, correction: str = "holm", alpha: float = ALPHA) -> pd.DataFrame:
    """"Transfer is target-specific" has its own test: per (model, intermediate arm) over its targets,
    Cochran's Q of the Δ means with their standard errors (chi-square, T - 1 df; H0: one Δ for every
    target), adjusted over the arms. Metrics differ between targets, so read it only across targets
    of one metric."""
    rows = []
    if comparisons.empty:
        return pd.DataFrame()
    usable = comparisons.dropna(subset=["delta_mean", "delta_mean_se"])
    usable = usable[usable["delta_mean_se"].astype(float) > 0]   # no spread: no weight, no test
    for (model, name, settings), group in usable.groupby(["model", "intermediate", "settings"], sort=False):
        if len(group) < 2:
            continue
        d, w = group["delta_mean"].to_numpy(float), 1 / group["delta_mean_se"].to_numpy(float) ** 2
        q = float((w * (d - (w * d).sum() / w.sum()) ** 2).sum())
        rows.append(dict(model=model, intermediate=name, settings=settings, targets=len(group),
                         metrics=", ".join(sorted(set(group["metric_name"]))), q=q,
                         p=float(stats.chi2.sf(q, len(group) - 1))))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_adj"] = table.groupby("model", group_keys=False)["p"].apply(lambda p: _adjusted(p, correction))
    table["verdict"] = np.where(table["p_adj"] < alpha, "target-specific", "inconclusive")
    return table


def claims_table(comparisons: pd.DataFrame, contrasts: pd.DataFrame, specific: pd.DataFrame,
                 correction: str = "holm", margin: float = 0.01) -> pd.DataFrame:
    """One row per claim: claim, test, estimate, raw p, adjusted p, and supported / not supported /
    inconclusive. A "raises" claim is supported by a significant positive Δ, not supported by a
    significant negative one or by equivalence within the margin, inconclusive otherwise."""
    rows = []
    name = CORRECTIONS[correction]

    def add(claim, test, family, estimate, p, p_adj, word):
        rows.append(dict(claim=claim, test=test, family=family, estimate=estimate, p=p, p_adj=p_adj,
                         result=word))

    def word_of(r, stat):
        if r[f"delta_{stat}_significant"]:
            return "supported" if r[f"delta_{stat}"] > 0 else "not supported"
        if stat == "mean" and r["equivalent"]:
            return "not supported"
        return "inconclusive"

    for table, kind in ((comparisons, "matrix"), (contrasts, "contrasts")):
        if table is None or table.empty:
            continue
        for r in table.to_dict("records"):
            if r.get("delta_mean") is None or pd.isna(r.get("delta_mean")):
                continue
            a = arm_label(r["intermediate"], r["settings"]) if kind == "matrix" else arm_label(r["a"], r["a_settings"])
            b = "vanilla" if kind == "matrix" else arm_label(r["b"], r["b_settings"])
            scope = SCOPE[r["scope"]]
            add(f"{a} raises the mean {r['target']} {r['metric_name']} over {b}",
                f"block-design t over {r['cells']} cells ({scope}); TOST ±{margin:g}",
                f"{kind} Δ mean, {name}", r["delta_mean"], r["delta_mean_p"], r["delta_mean_p_adj"], word_of(r, "mean"))
            if r.get("delta_max") is not None and not pd.isna(r.get("delta_max")):
                add(f"{a} raises the best {r['target']} {r['metric_name']} over {b} (equal budget n={r['budget_n']})",
                    "within-cell permutation (these checkpoints)", f"{kind} Δ max, {name}",
                    r["delta_max"], r["delta_max_p"], r["delta_max_p_adj"], word_of(r, "max"))
    for r in (specific.to_dict("records") if specific is not None and len(specific) else []):
        add(f"{arm_label(r['intermediate'], r['settings'])}'s transfer differs between targets",
            f"Cochran's Q over {r['targets']} targets", f"arm x target, {name}", r["q"], r["p"], r["p_adj"],
            "supported" if r["verdict"] == "target-specific" else "inconclusive")
    return pd.DataFrame(rows)
