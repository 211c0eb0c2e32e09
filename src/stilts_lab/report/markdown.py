"""summary.md: per (target, model), the arms' statistics, each arm against vanilla, a factor's levels."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from stilts_lab.report.arms import GRID, arm_label
from stilts_lab.report.claims import CORRECTIONS
from stilts_lab.report.collect import metric_names, sections
from stilts_lab.report.stats import Interval


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


DELTA_HEADER = ["Δ mean [95% CI]", "Δ max at n [95% CI]", "cells", "mean p", "mean p adj", "max p",
                "max p adj", "TOST p adj", "verdict"]


def _scope(r: dict) -> str:
    return {"task": "task level", "cond": "these checkpoints"}.get(r.get("scope"), "")


def _delta_cells(r: dict) -> list:
    """A comparison's cells under DELTA_HEADER (tables.delta and claims.adjust_families's figures)."""
    if r.get("no_delta"):
        return [f"n/a ({r['no_delta']})", "n/a", r.get("cells", 0)] + ["n/a"] * 6
    mean_cell = f"{_num(r['delta_mean'])} {_interval(r, 'mean')}"
    if _missing(r.get("delta_max")):
        max_cell = "n/a (needs 2+ cells complete in both arms)"
    else:
        max_cell = f"{_num(r['delta_max'])} (n={r['budget_n']}) {_interval(r, 'max')}"
    star = "*" if r.get("delta_mean_significant") else ""
    return [mean_cell + star, max_cell + ("*" if r.get("delta_max_significant") else ""), r["cells"],
            _pv(r["delta_mean_p"]), _pv(r["delta_mean_p_adj"]), _pv(r["delta_max_p"]), _pv(r["delta_max_p_adj"]),
            _pv(r["tost_p_adj"]), f"{r['verdict']} ({_scope(r)})"]


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pv(p) -> str:
    return "n/a" if _missing(p) else _p(float(p), "")


def _interval(r: dict, stat: str) -> str:
    low, high = r.get(f"delta_{stat}_low"), r.get(f"delta_{stat}_high")
    if _missing(low):
        return "[n/a: too few cells]" if stat == "max" else "[n/a]"
    return f"[{low:.4f}, {high:.4f}]"


BASELINE_KIND = {"classification": "majority class", "multiple_choice": "most frequent answer position",
                 "regression": "constant prediction: the training mean"}


def how_to_read(correction: str, margin: float) -> list[str]:
    grid = ", ".join(c.removeprefix("config.") for c in GRID)
    name = CORRECTIONS[correction]
    return ["", "## How to read", "",
            f"- **Arm**: the trials of one intermediate task whose settings differ only in the grid's own "
            f"hyperparameters ({grid}), pooled over its intermediate seeds (checkpoints); `settings` lists "
            "what else differs (never pooled). A **cell** is one grid point; every arm fills the same cells.",
            "- **trials** are the scored trials; **≤ baseline** counts those whose best dev score never rose "
            "above the trivial baseline (a constant prediction; metrics.json says status \"diverged\"); they "
            "stay in every statistic. Failed trials have no score and count only under **failed**.",
            "- **Δ mean**: the arm minus vanilla (or A minus B), paired by cell: scores fitted as cell + "
            "(arm, checkpoint) effects, residual pooled over the experiment's arms. Its test is a t test on "
            "that fit, **conditional on these checkpoints** when an arm has fewer than 3 intermediate seeds, "
            "**task level** (the checkpoints' spread added, df = seeds - 1) from 3 seeds on.",
            "- **Δ max at n**: each checkpoint's expected best of n trials (n = its cells, Dodge et al. 2019), "
            "averaged over checkpoints, minus vanilla's at the same n: equal budgets, so 12 pooled trials never "
            "face 6. Its test permutes the scores within each cell (these checkpoints); its interval inverts "
            "that test.",
            f"- **p** is raw, **p adj** is {name}-adjusted over the family: per model, the matrix's Δ mean "
            "cells, its Δ max cells, and the contrasts, each a family of its own. **\\*** marks adj p < 0.05. "
            "Intervals are the unadjusted 95% ones: read the star, not whether an interval excludes 0.",
            f"- **verdict**: higher / lower (the adjusted test decided), equivalent (TOST within ±{margin:g} of "
            "the metric passed after the same adjustment), else **inconclusive**: a test that did not decide "
            "never says \"no effect\"."]


def render_summary(df: pd.DataFrame, arms: pd.DataFrame, comparisons: pd.DataFrame,
                   dirs: Sequence[Path], factor: str | None = None,
                   factors: pd.DataFrame | None = None, appendix: Sequence[str] = (),
                   correction: str = "holm", margin: float = 0.01, claims: Sequence[str] = ()) -> str:
    """`appendix`: markdown lines of the report's cross-target sections (curves, matrix, estimates);
    `claims`: the claims section's lines, shown first after how to read."""
    lines = ["# Intermediate-task fine-tuning report", "",
             f"{len(df)} trials from {', '.join(str(d) for d in dirs)}; "
             f"{int((~df['scored']).sum())} failed, {int(df['at_baseline'].sum())} at or below the trivial baseline."]
    if df.attrs.get("duplicates_dropped"):
        lines.append(f"Dropped {df.attrs['duplicates_dropped']} duplicate trial(s) "
                     "(same config_hash; kept the newest finished metrics.json, "
                     "the newest failed one where none finished).")
    if df.attrs.get("unreadable"):
        lines.append(f"Skipped {df.attrs['unreadable']} unreadable metrics.json file(s).")
    lines += how_to_read(correction, margin) + list(claims)

    for model, target, section in sections(df):
        def mine(table: pd.DataFrame) -> list[dict]:
            if not len(table):
                return []
            return table[(table["model"] == model) & (table["target"] == target)].to_dict("records")

        metric = metric_names(section) or "n/a"
        baselines = ", ".join(_num(b) for b in sorted(set(section["trivial_baseline"].dropna())))
        kinds = sorted(set(section.get("config.target.kind", pd.Series(dtype=object)).dropna()))
        kind = ", ".join(BASELINE_KIND.get(k, k) for k in kinds) or "constant prediction"
        show = bool(section["settings"].astype(bool).any())
        lines += ["", f"## {target} (model {model}): dev {metric}",
                  "", f"Trivial baseline ({kind}): {baselines or 'n/a'}.", ""]
        seeded = any(r["intermediate_seeds"] > 1 for r in mine(arms))
        lines += _md_table(
            _with_settings(show, ["intermediate", "trials", "failed", "≤ baseline", "mean", "std",
                                  "median", "min", "max"] + (["intermediate seeds"] if seeded else [])),
            (_row(show, r, [r["trials"], r["failed"], r["at_baseline"], _num(r["mean"]), _num(r["std"]),
                            _num(r["median"]), _num(r["min"]), _num(r["max"])]
                  + ([r["intermediate_seeds"] or "-"] if seeded else []))
             for r in mine(arms)))

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
    return "\n".join(lines + [""])


def claims_section(claims: pd.DataFrame, correction: str) -> list[str]:
    """The claims every test above supports, one sentence each, generated from the tests."""
    if claims is None or claims.empty:
        return []
    name = CORRECTIONS[correction]
    lines = ["", "## Claims", "",
             f"Each claim with its test, its raw and {name}-adjusted p (over its family) and what they "
             "support: supported (adjusted p < 0.05 in the claim's direction), not supported (significant "
             "the other way, or equivalent within the margin), inconclusive (neither).", ""]
    return lines + _md_table(["claim", "test", "estimate", "p", "p adj", "result"],
                             ([r["claim"], r["test"]] + _tested(r) for r in claims.to_dict("records")))


def _tested(r: dict) -> list[str]:
    """estimate, p, p adj and the result (bold where supported) of a claim or hypothesis row."""
    return ["n/a" if _missing(r["estimate"]) else f"{r['estimate']:+.4f}", _pv(r["p"]), _pv(r["p_adj"]),
            f"**{r['result']}**" if r["result"] == "supported" else r["result"]]


def hypotheses_section(table: pd.DataFrame | None, correction: str) -> list[str]:
    """The paper's claims H1-H5 (hypotheses.py), each with its test and the word it earns."""
    if table is None or table.empty:
        return []
    name = CORRECTIONS[correction]
    lines = ["", "## The paper's claims (H1-H5)", "",
             f"One family per model, {name}-adjusted. H1, H2, H4 claim an effect (supported: significant in "
             "its direction); H3, H5 claim equivalence (supported: TOST passes; not supported: a significant "
             "difference). H4 classifies cells by an independent vanilla replicate (replicate=1). H1, H3 and "
             "H5 are tested on these intermediate checkpoints; the task-level p (checkpoints resampled, 3+ "
             "seeds; unadjusted, outside the family) says whether the claim reaches intermediate training "
             "in general.", ""]
    return lines + _md_table(["target", "hypothesis", "claim", "test", "estimate", "p", "p adj", "result",
                              "95% interval (unadjusted)", "task-level p", "note"],
                             ([r["target"], r["hypothesis"], r["claim"], r["test"]] + _tested(r)
                              + [_hypothesis_interval(r), _pv(r.get("task_p")), r.get("note") or ""]
                              for r in table.to_dict("records")))


def _hypothesis_interval(r: dict) -> str:
    if _missing(r.get("low")) or _missing(r.get("high")):
        return "n/a"
    return f"[{r['low']:+.4f}, {r['high']:+.4f}] ({r['interval']})"


def power_section(power: pd.DataFrame) -> list[str]:
    """Per target: its variance components and the smallest Δ its own tests detect at 80% power."""
    if power is None or power.empty:
        return []
    lines = ["", "## Power: the smallest Δ this design detects", "",
             "At 80% power, after Holm over the family (its first, strictest step), for the report's own "
             "tests on this sweep's design. Standard deviations from the block design: residual (pooled), "
             "between checkpoints of one arm (beyond the residual), between cells (what pairing removes). "
             "`python -m stilts_lab.report plan DIR --effect E --family-size M` sizes a design for an effect.", ""]
    return lines + _md_table(
        ["target", "cells", "seeds", "arms", "family", "sd residual", "sd checkpoint", "sd cell",
         "detectable Δ (these checkpoints)", "detectable Δ (task level)"],
        ([r["target"], r["cells"], r["checkpoints"], r["arms"], r["family_size"], _sd(r["residual"]),
          _sd(r["checkpoint"]), _sd(r["cell"]), _num(r["mde_conditional"]),
          _num(r["mde_task"]) if not _missing(r["mde_task"]) else "n/a (needs 3+ seeds)"]
         for r in power.to_dict("records")))


def _sd(var) -> str:
    return "n/a" if _missing(var) else f"{math.sqrt(max(0.0, var)):.4f}"


def curve_section(curves: pd.DataFrame) -> list[str]:
    """Per target: the expected best dev score after n = 1, 3 and the equal budget, with its band."""
    from stilts_lab.report.curves import BAND_METHOD, CONFIDENCE, band_text, equal_budget, table_points
    if curves.empty:
        return []
    lines = ["", "## Tuning curves: expected best dev score after n trials", "",
             "n = 1 is the arm's mean. Arms are compared at the equal budget, the smallest trial count among "
             "the target's arms: the best of 12 pooled trials beats the best of 6 even where the arms do not differ. "
             f"[{CONFIDENCE:.0%} simultaneous band: opda, {BAND_METHOD}, over the metric's whole range; "
             "n/a where the range is unknown.]"]
    for (model, target), section in curves.groupby(["model", "target"], sort=True):
        budget = equal_budget(section)
        lines += ["", f"### {target} (model {model}): dev {section['metric_name'].iloc[0]}", ""]
        rows = []
        for _, curve in section.groupby("arm", sort=False):
            first = curve.iloc[0]
            at = curve.set_index("n")
            cells = {n: band_text(at.loc[n]) for n in table_points(curve, budget=budget)}
            rows.append([arm_label(first["intermediate"], first["settings"]), int(first["trials"])]
                        + [cells.get(n, "-") for n in (1, 3)] + [cells.get(budget, "-")])
        lines += _md_table(["intermediate", "trials", "n=1", "n=3", f"n={budget} (equal budget)"], rows)
    return lines


def matrix_section(cells: pd.DataFrame, correction: str = "holm") -> list[str]:
    """The transfer matrix: Δ mean and Δ max per (intermediate arm, target), * where the adjusted
    test rejects."""
    from stilts_lab.report.matrix import wide
    if cells.empty:
        return []
    name = CORRECTIONS[correction]
    lines = ["", "## Transfer matrix: Δ against vanilla, intermediate × target", "",
             "Each column in its own metric's units; [unadjusted 95% interval]; * where the "
             f"{name}-adjusted p over the matrix's cells of that statistic is below 0.05. Δ max is at equal "
             "budgets (each checkpoint's expected best of its cells' count, against vanilla's)."]
    for stat in ("mean", "max"):
        table = wide(cells, stat)
        text = {(r["row"], r["column"]): ("n/a" if _missing(r[f"delta_{stat}"]) else
                                          f"{r[f'delta_{stat}']:+.4f} {_interval(r, stat)}"
                                          + ("*" if r[f"delta_{stat}_significant"] else ""))
                for r in cells.to_dict("records")}
        lines += ["", f"### Δ {stat}", ""]
        lines += _md_table(["intermediate"] + list(table.columns),
                           ([row] + [text.get((row, c), "-") for c in table.columns] for row in table.index))
    return lines


def contrast_section(table: pd.DataFrame) -> list[str]:
    """`--contrast A:B`: A minus B per target, paired by cell, one family of their own."""
    if table.empty:
        return []
    lines = ["", "## Contrasts between intermediate arms (A minus B)", "",
             "Per target, in its metric's units, with the same tests as against vanilla (the same block "
             "design, so the same residual); the contrasts are a family of their own for the adjustment. "
             "Δ > 0 favours A.", ""]
    show = bool((table["a_settings"].astype(bool) | table["b_settings"].astype(bool)).any())
    return lines + _md_table(
        ["target", "A", "B"] + DELTA_HEADER,
        ([r["target"] + (f" ({r['model']})" if table["model"].nunique() > 1 else ""),
          arm_label(r["a"], r["a_settings"] if show else ""), arm_label(r["b"], r["b_settings"] if show else "")]
         + _delta_cells(r) for r in table.to_dict("records")))


def heterogeneity_section(table: pd.DataFrame) -> list[str]:
    """"Is the transfer target-specific?": Cochran's Q per intermediate arm over its targets."""
    if table is None or table.empty:
        return []
    lines = ["", "## Is the transfer target-specific? (arm × target)", "",
             "Cochran's Q of each arm's Δ means over its targets, weighted by their standard errors "
             "(H0: one Δ for all targets), adjusted over the arms. Meaningful across targets of one metric.", ""]
    return lines + _md_table(["intermediate", "targets", "metrics", "Q", "p", "p adj", "verdict"],
                             ([arm_label(r["intermediate"], r["settings"]), r["targets"], r["metrics"],
                               f"{r['q']:.2f}", _pv(r["p"]), _pv(r["p_adj"]), r["verdict"]]
                              for r in table.to_dict("records")))


def prediction_section(predictions: pd.DataFrame, trial_seconds: dict) -> list[str]:
    """Each estimator's ranking of the candidates against the realised Δ mean, with its uncertainty and cost."""
    if predictions.empty:
        return []
    lines = ["", "## Transferability estimates against realised Δ mean", "",
             "Spearman's ρ (score vs Δ mean) with its exact permutation p and a 95% interval from resampling "
             "the grid cells (the realised Δs move with them); `P(pick best)`: the share of those resamples "
             "in which the estimator's top-scored candidate is the realised best. NDCG (gain: Δ mean minus "
             "the target's smallest), Regret@k ((best Δ − best Δ among the top k scored) / |best Δ|); "
             "`picked` against the realised `best`; `shortfall`: best Δ − picked Δ in the metric's units; "
             "`estimate s` against `trials s`: what the estimates cost against the target stages they "
             "would save. With a handful of candidates a ranking is rarely decided: read p and the interval. These "
             "definitions differ between papers (hf-dataset-selector: Regret@k = (best − best of top k) / best "
             "on raw scores, NDCG gain 2^(100 × score) − 1); here gains are Δs against vanilla, and vanilla "
             "counts as a candidate (Δ = 0) for every estimator that scores the plain encoder (LogME, H-score, "
             "kNN; not TextEmb or vocabulary overlap, which compare two datasets and have none for it).", ""]
    lines += _md_table(["target", "estimator", "candidates", "Spearman ρ", "exact p", "ρ 95% CI", "P(pick best)",
                        "NDCG", "Regret@1", "Regret@3", "picked (Δ)", "best (Δ)", "shortfall", "estimate s", "trials s"],
                       ([r["target"], r["estimator"], r["candidates"], _num(r["spearman"]), _pv(r["spearman_p"]),
                         "n/a" if _missing(r["spearman_low"]) else f"[{r['spearman_low']:+.2f}, {r['spearman_high']:+.2f}]",
                         "n/a" if _missing(r["p_pick_best"]) else f"{r['p_pick_best']:.2f}",
                         _num(r["ndcg"]), _num(r["regret_at_1"]), _num(r["regret_at_3"]),
                         f"{r['picked']} ({r['picked_delta']:+.4f})", f"{r['best']} ({r['best_delta']:+.4f})",
                         _num(r["shortfall"]), f"{r['seconds']:.1f}",
                         f"{trial_seconds.get((r['model'], r['target']), float('nan')):.1f}"]
                        for r in predictions.to_dict("records")))
    return lines


def search_section(searches: pd.DataFrame) -> list[str]:
    """What each ranking would have saved: training its candidates in its order until the realised best."""
    if searches.empty:
        return []
    lines = ["", "## What each ranking would have saved", "",
             "Training the candidates one by one in the ranker's order until the realised best is trained, "
             "against a random order. `trainings`: the best's position in the ranker's order (random: "
             "(n + 1) / 2 on average); `search s`: those candidates' target-stage seconds (random: the best's "
             "plus half the others'); `saved s`: random's minus the ranker's, minus the ranker's own cost, with "
             "a 95% interval from resampling the grid cells (the realised best moves with them) and "
             "P(saves): the share of resamples in which the ranking saves any time. Intermediate stages are "
             "not counted, so for candidates still to be trained the savings are a floor. Rankers that cannot score "
             "the plain encoder (TextEmb, vocabulary overlap) search their intermediate candidates only (see "
             "`candidates`): their best is the best intermediate, vanilla aside. (most): the largest "
             "point estimate of a target; where the intervals overlap, which ranker saves most is undecided.", ""]
    saved = searches["saved_seconds"].round()   # as printed: a tie to the second is a tie
    most = saved == saved.groupby([searches["model"], searches["target"]]).transform("max")
    lines += _md_table(["target", "ranker", "candidates", "trainings (random)", "search s (random)", "ranker s",
                        "saved s", "saved 95% CI", "P(saves)"],
                       ([r["target"], r["estimator"] + (" (most)" if most[i] else ""), r["candidates"],
                         f"{r['trainings_to_best']} ({r['random_trainings']:.1f})",
                         f"{r['search_seconds']:.0f} ({r['random_seconds']:.0f})", f"{r['ranker_seconds']:.1f}",
                         f"{r['saved_seconds']:+.0f}",
                         "n/a" if _missing(r["saved_low"]) else f"[{r['saved_low']:+.0f}, {r['saved_high']:+.0f}]",
                         "n/a" if _missing(r["p_saves"]) else f"{r['p_saves']:.2f}"]
                        for i, r in searches.iterrows()))
    return lines
