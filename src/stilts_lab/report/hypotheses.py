"""The paper's claims as tests (`--hypotheses`), per target, one family adjusted together:

- H1: real-fake (the paper's fakes) raises the mean target score over the grid: Δ mean > 0 (the
  block-design t test of tables.delta, conditional on these checkpoints).
- H2: it raises the mean more than the best score: Δ mean - Δ max at equal budgets > 0, paired,
  tested by permuting the scores within each cell (these checkpoints).
- H3: HellaSwag-p does about as well as real-fake: TOST of their Δ within ±margin.
- H4: the gain sits where vanilla fails: the per-cell gain is larger in cells where an independent
  vanilla replicate (replicate=1) ended at or below the trivial baseline than in the others (Welch t
  over the two groups of cells). Classifying cells by the very vanilla trial the arm is compared
  with would let regression to the mean make the effect.
- H5: the controlled, filtered fakes transfer as the paper's do: TOST of realfake against
  realfake_paper within ±margin.

H1, H3 and H5 are decided by the conditional test ("these intermediate checkpoints"), as the
replication preregistered (docs/replication/PREREGISTRATION.md): at the planned design only it reaches
the effect sizes that matter. Its task-level twin (checkpoints resampled, from 3 seeds) is printed beside
it (`task_p`), outside the family: a claim about intermediate training in general needs that one too.

Words: H1, H2, H4 are supported by a significant effect in the claimed direction, not supported by
one against it; H3 and H5 (claims of equivalence) are supported by TOST, not supported by a
significant difference. Everything else is inconclusive. Holm (or BH) over all of a model's tests.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from stilts_lab.report.arms import VANILLA, value_label
from stilts_lab.report.collect import SCORE, sections
from stilts_lab.report.inference import ALPHA, adjust, mean_minus_max_delta, permutation_test
from stilts_lab.report.tables import MARGIN, complete_layout, delta, experiments

PAPER, HELLASWAG_P, CONTROLLED = "realfake_paper", "hellaswag_p", "realfake"
HYPOTHESES_FILE = "hypotheses.csv"


def _arm(section: pd.DataFrame, name: str, vanilla_key: str | None = None) -> pd.DataFrame:
    trials = section[(section["intermediate"] == name) & section["scored"]]
    if vanilla_key is not None:
        trials = trials[trials["vanilla_arm"] == vanilla_key]
    return trials


def _replicate(trials: pd.DataFrame) -> pd.Series:
    column = trials.get("config.replicate", pd.Series(0, index=trials.index))
    return column.map(value_label).replace("null", "0")


def _h4(section: pd.DataFrame, paper: pd.DataFrame, vanilla: pd.DataFrame) -> dict:
    """Welch t of the per-cell gain, cells where the vanilla replicate failed against the rest."""
    scored = section[section["scored"] & (section["intermediate"] == VANILLA)]
    replicate = scored[_replicate(scored) == "1"]
    if replicate.empty:
        return dict(estimate=None, p=None, note="needs vanilla trials with replicate=1 to classify the cells")
    failed = replicate.groupby("cell")["at_baseline"].any()
    gain = paper.groupby("cell")[SCORE].mean() - vanilla.groupby("cell")[SCORE].mean()
    gain = gain.dropna()
    where = failed.reindex(gain.index)
    inside, outside = gain[where == True].to_numpy(float), gain[where == False].to_numpy(float)  # noqa: E712
    if len(inside) < 2 or len(outside) < 2:
        return dict(estimate=None, p=None, note=f"{len(inside)} failed and {len(outside)} other cells: "
                                                "needs 2+ of each")
    test = stats.ttest_ind(inside, outside, equal_var=False)
    interval = test.confidence_interval(1 - ALPHA)
    return dict(estimate=float(inside.mean() - outside.mean()), p=float(test.pvalue), low=float(interval.low),
                high=float(interval.high), note=f"{len(inside)} cells where the vanilla replicate failed, "
                                                f"{len(outside)} others")


def cell_bootstrap(a: np.ndarray, b: np.ndarray, statistic, resamples: int = 2_000, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile interval of statistic(a, b) over resamples of the cells (rows of a and b
    together, so the pairing by cell is kept); shapes (C, K)."""
    rows = np.random.default_rng(seed).integers(0, a.shape[0], (resamples, a.shape[0]))
    low, high = np.percentile(statistic(a[rows], b[rows]), [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(low), float(high)


def hypotheses_table(df: pd.DataFrame, margin: float = MARGIN, correction: str = "holm",
                     alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (model, target, hypothesis): estimate, test, raw and adjusted p, result."""
    rows = []
    for model, target, section in sections(df):
        plain = section[(section["intermediate"] == VANILLA) & (_replicate(section) == "0") & section["scored"]]
        if plain.empty:
            continue
        vanilla_key = plain["arm"].iloc[0]
        fits = experiments(section)
        fit = fits.get(vanilla_key)
        paper = _arm(section, PAPER, vanilla_key)
        base = dict(model=model, target=target, metric_name=", ".join(sorted(set(section["metric_name"].dropna()))))

        def add(name, claim, test, estimate, p, kind, note="", task_p=None, low=None, high=None, interval=""):
            rows.append(dict(base, hypothesis=name, claim=claim, test=test, estimate=estimate, low=low, high=high,
                             interval=interval, p=p, kind=kind, note=note, task_p=task_p))

        if not paper.empty:
            d = delta(paper, plain, fit, margin)
            add("H1", f"{PAPER} raises the mean {target} score", "block-design t (these checkpoints)",
                d["delta_mean"], d["cond_p"], "effect", task_p=d["task_p"], low=d["cond_low"], high=d["cond_high"],
                interval="block-design t")
            a, b = complete_layout(paper, plain)
            if len(a) >= 2:
                observed, p = permutation_test(a, b, mean_minus_max_delta)
                low, high = cell_bootstrap(a, b, mean_minus_max_delta)
                add("H2", f"{PAPER} raises the mean more than the best score (equal budget n={len(a)})",
                    "within-cell permutation of Δ mean - Δ max", float(observed), float(p), "effect",
                    low=low, high=high, interval="cell bootstrap")
            h4 = _h4(section, paper, plain)
            add("H4", f"{PAPER}'s gain is larger where vanilla fails", "Welch t over cells, classified by "
                "a vanilla replicate", h4["estimate"], h4["p"], "effect", h4["note"], low=h4.get("low"),
                high=h4.get("high"), interval="Welch t")
        for name, other, label in (("H3", HELLASWAG_P, "HellaSwag-p transfers"),
                                   ("H5", CONTROLLED, "the controlled fakes transfer")):
            arm = _arm(section, other, vanilla_key)
            if arm.empty or paper.empty:
                continue
            d = delta(arm, paper, fit, margin)
            difference = "n/a" if d["cond_p"] is None else f"{d['cond_p']:.4f}"
            add(name, f"{label} as {PAPER} does (±{margin:g})", "TOST (block design, these checkpoints)",
                d["delta_mean"], d["cond_tost_p"], "equivalence", f"Δ {d['delta_mean']:+.4f}, difference p {difference}",
                task_p=d["task_tost_p"], low=d["cond_low"], high=d["cond_high"], interval="block-design t")
            rows[-1]["difference_p"] = d["cond_p"]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_adj"] = np.nan
    for _, group in table.groupby("model"):
        table.loc[group.index, "p_adj"] = adjust(pd.to_numeric(group["p"]).to_numpy(float)[None, :], correction)[0]
    table["result"] = [_result(r, alpha, len(table)) for r in table.to_dict("records")]
    return table


def _result(r: dict, alpha: float, family: int) -> str:
    if r["p_adj"] is None or pd.isna(r["p_adj"]):
        return "inconclusive"
    if r["kind"] == "effect":
        if r["p_adj"] < alpha:
            return "supported" if r["estimate"] > 0 else "not supported"
        return "inconclusive"
    # equivalence: TOST decides "supported"; a difference significant at the family's first Holm step
    # decides "not supported"
    if r["p_adj"] < alpha:
        return "supported"
    difference = r.get("difference_p")
    if difference is not None and not pd.isna(difference) and difference * family < alpha:
        return "not supported"
    return "inconclusive"
