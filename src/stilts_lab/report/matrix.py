"""The transfer matrix (Pruksachatkun et al. 2020): one row per intermediate arm, one column per
target, each cell the arm's Δ mean (and Δ max at equal budgets) against vanilla, as
comparison_table computes them and claims.adjust_families adjusts them.

Each target keeps its own metric's units: its column header names the metric, and nothing is
rescaled in the CSV. A cell is `significant` when its adjusted p (Holm over the matrix's cells of
that statistic, by default) is below 0.05; _low/_high are the unadjusted 95% interval, and the CSV
keeps the raw and adjusted p beside them.
"""
from __future__ import annotations

import pandas as pd

from stilts_lab.report.arms import arm_label

MATRIX_FILE = "transfer_matrix.csv"


def column_label(target: str, metric: str, model: str | None = None) -> str:
    return f"{target} ({metric})" + (f" [{model}]" if model else "")


def transfer_matrix(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Long form, one row per (intermediate arm, target): delta_{mean,max} with _low, _high, _p,
    _p_adj and _significant, the scope of the Δ mean test, its TOST and the verdict. Empty unless the report spans 2+ intermediate arms and 2+ targets."""
    if comparisons.empty:
        return pd.DataFrame()
    several_models = comparisons["model"].nunique() > 1
    rows = []
    for r in comparisons.to_dict("records"):
        if r["no_delta"]:
            continue
        row = dict(model=r["model"], target=r["target"], metric_name=r["metric_name"],
                   intermediate=r["intermediate"], settings=r["settings"],
                   intermediate_seeds=r["intermediate_seeds"], cells=r["cells"], budget_n=r["budget_n"],
                   scope=r["scope"],
                   row=arm_label(r["intermediate"], r["settings"]),
                   column=column_label(r["target"], r["metric_name"], r["model"] if several_models else None))
        for stat in ("mean", "max"):
            for part in ("", "_low", "_high", "_p", "_p_adj", "_significant"):
                row[f"delta_{stat}{part}"] = r[f"delta_{stat}{part}"]
        row.update(tost_p=r["tost_p"], tost_p_adj=r["tost_p_adj"], verdict=r["verdict"])
        rows.append(row)
    cells = pd.DataFrame(rows)
    if cells.empty or cells["row"].nunique() < 2 or cells["column"].nunique() < 2:
        return pd.DataFrame()
    return cells


def wide(cells: pd.DataFrame, stat: str) -> pd.DataFrame:
    """rows x columns of delta_{stat}, in the order the arms and targets first appear."""
    rows = list(dict.fromkeys(cells["row"]))
    columns = list(dict.fromkeys(cells.sort_values(["target", "model"])["column"]))
    return cells.pivot(index="row", columns="column", values=f"delta_{stat}").reindex(index=rows, columns=columns)
