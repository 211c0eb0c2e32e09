"""summary.md: per (target, model), the arms' statistics, each arm against vanilla, a factor's levels."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from stilts_lab.report.arms import GRID, arm_label
from stilts_lab.report.collect import metric_names, sections
from stilts_lab.report.stats import RESAMPLES, Interval


def _num(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _p(p: float | None, note: str) -> str:
    if p is None:
        return f"n/a ({note})"
    # 4 decimals would print a tiny p-value as 0.0000.
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _ci(ci: Interval) -> str:
    return f"n/a ({ci.note})" if ci.low is None else f"[{ci.low:.4f}, {ci.high:.4f}]"


def _share(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def _md_table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _with_settings(show: bool, header: list[str]) -> list[str]:
    return header[:1] + ["settings"] + header[1:] if show else header


def _row(show: bool, r: dict, cells: list) -> list:
    return [arm_label(r["intermediate"])] + ([r["settings"] or "-"] if show else []) + cells


DELTA_HEADER = ["Δ mean [95% CI]", "Δ max [95% CI]", "pairs", "mean paired Δ", "Wilcoxon p", "paired t p"]


def _delta_cells(r: dict) -> list:
    """A comparison's cells under DELTA_HEADER (tables.delta's figures)."""
    t = r["paired"]
    if r.get("no_delta"):
        mean_cell = max_cell = f"n/a ({r['no_delta']})"
    else:
        mean_cell = f"{_num(r['delta_mean'])} {_ci(r['delta_mean_ci'])}"
        max_cell = f"{_num(r['delta_max'])} {_ci(r['delta_max_ci'])}"
    return [mean_cell, max_cell, t.pairs, _num(t.mean_diff), _p(t.wilcoxon_p, t.wilcoxon_note),
            _p(t.ttest_p, t.ttest_note)]


def render_summary(df: pd.DataFrame, arms: pd.DataFrame, comparisons: pd.DataFrame,
                   dirs: Sequence[Path], factor: str | None = None,
                   factors: pd.DataFrame | None = None, appendix: Sequence[str] = ()) -> str:
    """`appendix`: markdown lines of the report's cross-target sections (curves, matrix, estimates)."""
    lines = ["# Intermediate-task fine-tuning report", "",
             f"{len(df)} trials from {', '.join(str(d) for d in dirs)}; "
             f"{int((~df['scored']).sum())} failed, {int(df['diverged'].sum())} diverged."]
    if df.attrs.get("duplicates_dropped"):
        lines.append(f"Dropped {df.attrs['duplicates_dropped']} duplicate trial(s) "
                     "(same config_hash; kept the newest finished metrics.json, "
                     "the newest failed one where none finished).")
    if df.attrs.get("unreadable"):
        lines.append(f"Skipped {df.attrs['unreadable']} unreadable metrics.json file(s).")

    for model, target, section in sections(df):
        def mine(table: pd.DataFrame) -> list[dict]:
            if not len(table):
                return []
            return table[(table["model"] == model) & (table["target"] == target)].to_dict("records")

        metric = metric_names(section) or "n/a"
        baselines = ", ".join(_num(b) for b in sorted(set(section["trivial_baseline"].dropna())))
        show = bool(section["settings"].astype(bool).any())
        lines += ["", f"## {target} (model {model}): dev {metric}",
                  "", f"Trivial baseline (majority class): {baselines or 'n/a'}.", ""]
        seeded = any(r["intermediate_seeds"] > 1 for r in mine(arms))
        lines += _md_table(
            _with_settings(show, ["intermediate", "trials", "failed", "diverged", "mean", "std",
                                  "median", "min", "max"]
                           + (["intermediate seeds", "between-seed share"] if seeded else [])),
            (_row(show, r, [r["trials"], r["failed"], r["diverged"], _num(r["mean"]), _num(r["std"]),
                            _num(r["median"]), _num(r["min"]), _num(r["max"])]
                  + ([r["intermediate_seeds"] or "-", _share(r["between_seed_share"])] if seeded else []))
             for r in mine(arms)))
        if seeded:
            lines += ["", "An arm's trials from several intermediate seeds (intermediate checkpoints) are pooled; "
                      "`between-seed share` is the part of its score variance that lies between "
                      "checkpoints (one-way random-effects variance components), and its Δ intervals "
                      "come from a two-level bootstrap: seeds, then trials within each."]

        comp = mine(comparisons)
        if comp:
            lines += ["", f"### Against vanilla (difference in dev {metric})", ""]
            lines += _md_table(_with_settings(show, ["intermediate"] + DELTA_HEADER),
                               (_row(show, r, _delta_cells(r)) for r in comp))

        ft = mine(factors) if factors is not None else []
        if ft:
            show_f = any(r["settings"] for r in ft)
            lines += ["", f"### Factor: {factor}", ""]
            lines += _md_table(_with_settings(show_f, ["intermediate", factor, "n", "mean", "std", "mean 95% CI"]),
                               (_row(show_f, r, [r["value"], r["n"], _num(r["mean"]), _num(r["std"]),
                                                 _ci(r["ci"])]) for r in ft))

    lines += list(appendix)
    grid = ", ".join(c.removeprefix("config.") for c in GRID)
    lines += ["", "How to read: an arm is the trials of one intermediate task whose settings differ only in "
              f"the grid's own hyperparameters ({grid}); `settings` lists what else differs between "
              "arms (arms with other settings are never pooled). `trials` are the scored trials every "
              "statistic uses, diverged ones included (status diverged, or best dev metric at or below "
              "the trivial baseline); failed trials have no score and only appear in `failed`. std is "
              "the sample std (n-1). Δ is the intermediate arm minus the vanilla arm with the same "
              "settings; its interval is a 95% percentile bootstrap (scipy.stats.bootstrap, "
              f"{RESAMPLES:,} resamples, each arm resampled independently, fixed seed; an arm of one "
              "trial has none); an interval that excludes 0 suggests a real difference. The bootstrap "
              "of the max is biased low with few trials: read Δ max as rough. Pairs fill the same grid "
              f"cell ({grid}); a cell holding several trials of one arm contributes their mean. "
              "Δ > 0 favours the intermediate task.", ""]
    return "\n".join(lines)


def curve_section(curves: pd.DataFrame) -> list[str]:
    """Per target: the expected best dev score after n = 1, 3, 10 and all trials, with its band."""
    from stilts_lab.report.curves import BAND_METHOD, CONFIDENCE, band_text, table_points
    if curves.empty:
        return []
    lines = ["", "## Tuning curves: expected best dev score after n trials", "",
             f"n = 1 is the arm's mean, n = all approaches its max. [{CONFIDENCE:.0%} simultaneous band: "
             f"opda, {BAND_METHOD}, over the metric's whole range; n/a where the range is unknown.]"]
    for (model, target), section in curves.groupby(["model", "target"], sort=True):
        lines += ["", f"### {target} (model {model}): dev {section['metric_name'].iloc[0]}", ""]
        rows = []
        for _, curve in section.groupby("arm", sort=False):
            first = curve.iloc[0]
            at = curve.set_index("n")
            cells = {n: band_text(at.loc[n]) for n in table_points(curve)}
            trials = int(first["trials"])
            rows.append([arm_label(first["intermediate"], first["settings"]), trials]
                        + [cells.get(n, "-") for n in (1, 3, 10)] + [cells[trials]])
        lines += _md_table(["intermediate", "trials", "n=1", "n=3", "n=10", "n=all"], rows)
    return lines


def matrix_section(cells: pd.DataFrame) -> list[str]:
    """The transfer matrix: Δ mean and Δ max per (intermediate arm, target), * when the 95% interval
    excludes 0."""
    from stilts_lab.report.matrix import wide
    if cells.empty:
        return []
    lines = ["", "## Transfer matrix: Δ against vanilla, intermediate × target", "",
             "Each column in its own metric's units; [95% bootstrap interval], * where it excludes 0 "
             "(two-level over intermediate seeds where an arm has several)."]
    for stat in ("mean", "max"):
        table = wide(cells, stat)
        text = {(r["row"], r["column"]): f"{r[f'delta_{stat}']:+.4f} {_ci(Interval(r[f'delta_{stat}_low'], r[f'delta_{stat}_high']))}"
                + ("*" if r[f"delta_{stat}_significant"] else "")
                if r[f"delta_{stat}_low"] is not None and not pd.isna(r[f"delta_{stat}_low"])
                else f"{r[f'delta_{stat}']:+.4f}" for r in cells.to_dict("records")}
        lines += ["", f"### Δ {stat}", ""]
        lines += _md_table(["intermediate"] + list(table.columns),
                           ([row] + [text.get((row, c), "-") for c in table.columns] for row in table.index))
    return lines


def contrast_section(table: pd.DataFrame) -> list[str]:
    """`--contrast A:B`: A minus B per target, paired over the cells both filled."""
    if table.empty:
        return []
    lines = ["", "## Contrasts between intermediate arms (A minus B)", "",
             "Per target, in its metric's units; intervals two-level over intermediate seeds where an arm "
             "has several; pairs are the grid cells both arms filled (a cell's score: the mean over the "
             "arm's intermediate seeds). Δ > 0 favours A.", ""]
    show = bool((table["a_settings"].astype(bool) | table["b_settings"].astype(bool)).any())
    return lines + _md_table(
        ["target", "A", "B"] + DELTA_HEADER,
        ([r["target"] + (f" ({r['model']})" if table["model"].nunique() > 1 else ""),
          arm_label(r["a"], r["a_settings"] if show else ""), arm_label(r["b"], r["b_settings"] if show else "")]
         + _delta_cells(r) for r in table.to_dict("records")))


def prediction_section(predictions: pd.DataFrame, trial_seconds: dict) -> list[str]:
    """Each estimator's ranking of the candidates against the realised Δ mean, and its cost."""
    if predictions.empty:
        return []
    lines = ["", "## Transferability estimates against realised Δ mean", "",
             "Spearman's ρ (score vs Δ mean), NDCG (gain: Δ mean minus the target's smallest), "
             "Regret@k ((best Δ − best Δ among the top k scored) / |best Δ|); `picked`: the top-scored "
             "candidate and its Δ mean, against the realised `best`; `shortfall`: best Δ − picked Δ, in the "
             "metric's units (0: the estimator picked the best); `estimate s`: what the "
             "estimates of the target's candidates cost (encoding and fitting), against `trials s`: "
             "what the target's trials cost (their target stages' fit_seconds), the cost they would save.", ""]
    lines += _md_table(["target", "estimator", "candidates", "Spearman ρ", "NDCG", "Regret@1", "Regret@3",
                        "picked (Δ)", "best (Δ)", "shortfall", "estimate s", "trials s"],
                       ([r["target"], r["estimator"], r["candidates"], _num(r["spearman"]), _num(r["ndcg"]),
                         _num(r["regret_at_1"]), _num(r["regret_at_3"]), f"{r['picked']} ({r['picked_delta']:+.4f})",
                         f"{r['best']} ({r['best_delta']:+.4f})", _num(r["shortfall"]), f"{r['seconds']:.1f}",
                         f"{trial_seconds.get((r['model'], r['target']), float('nan')):.1f}"]
                        for r in predictions.to_dict("records")))
    return lines
