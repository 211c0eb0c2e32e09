"""One report: collect the trials, compute the tables, write results.csv, summary.md and the plots."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from stilts_lab.errors import StiltsError
from stilts_lab.report.collect import collect_trials, metric_names, sections
from stilts_lab.report.claims import CORRECTIONS, adjust_families, claims_table, heterogeneity
from stilts_lab.report.contrasts import CONTRASTS_FILE, contrast_table
from stilts_lab.report.curves import curve_table
from stilts_lab.report.hypotheses import HYPOTHESES_FILE, hypotheses_table
from stilts_lab.report.markdown import (claims_section, contrast_section, curve_section, heterogeneity_section,
                                        hypotheses_section, matrix_section, power_section, prediction_section,
                                        render_summary, search_section)
from stilts_lab.report.matrix import MATRIX_FILE, transfer_matrix
from stilts_lab.report.plots import (paper_style, plot_factor, plot_predicted, plot_transfer_matrix,
                                     plot_tuning_curves, plot_violins)
from stilts_lab.report.power import power_table
from stilts_lab.report.predict import (PREDICTIONS_FILE, candidates, prediction_table, read_estimates, realised_cells,
                                       trial_seconds)
from stilts_lab.report.search import SEARCH_FILE, arm_seconds, search_table
from stilts_lab.report.tables import MARGIN, arm_table, comparison_table, factor_table
from stilts_lab.results import METRICS_FILE

# Columns assign_arms adds for grouping; results.csv keeps the readable `settings` instead.
INTERNAL = ["arm", "arm_sort", "vanilla_arm", "cell"]
CLAIMS_FILE, CLAIMS_MD, POWER_FILE = "claims.csv", "claims.md", "power.csv"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))


def collected(dirs: Sequence[Path]):
    """Every trial under `dirs` (collect_trials), or an error naming the folders when there is none."""
    df = collect_trials(dirs)
    if df.empty:
        unreadable = f" ({df.attrs['unreadable']} unreadable)" if df.attrs.get("unreadable") else ""
        raise StiltsError(f"no {METRICS_FILE} found under {', '.join(str(d) for d in dirs)}"
                          + unreadable)
    return df


def write_results(dirs: Sequence[Path], out: Path) -> dict[str, Path]:
    """results.csv alone, no test computed: what a preregistered sweep commits while it runs (a sweep
    carried across machines, resume.CARRIED_FILE), without an interim look at its claims."""
    df = collected([Path(d) for d in dirs])
    out.mkdir(parents=True, exist_ok=True)
    df.drop(columns=INTERNAL).to_csv(out / "results.csv", index=False)
    return {"results.csv": out / "results.csv"}


def write_report(dirs: Sequence[Path], out: Path | None = None, factor: str | None = None,
                 contrasts: Sequence[str] = (), correction: str = "holm", margin: float = MARGIN,
                 hypotheses: bool = False) -> dict[str, Path]:
    """Write results.csv, summary.md, claims.csv and the plots into `out`; returns {file name: path}.
    `contrasts`: "A:B" specs, each intermediate arm A against arm B (contrasts.py); `correction`:
    "holm" or "bh" over each family; `margin`: TOST's equivalence margin in the metric's units;
    `hypotheses`: the paper's claims H1-H5 as tests (hypotheses.py)."""
    dirs = [Path(d) for d in dirs]
    df = collected(dirs)
    out = Path(out) if out is not None else dirs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def keep(path: Path) -> None:
        written[path.name] = path

    factors = factor_table(df, factor) if factor else None
    arms = arm_table(df)
    # before anything is written: a misspelt contrast is an error, not a missing section
    versus = adjust_families(contrast_table(df, contrasts, margin), correction)
    comparisons = adjust_families(comparison_table(df, margin), correction)
    specific = heterogeneity(comparisons, correction)
    claims = claims_table(comparisons, versus, specific, correction, margin)
    family = int(comparisons.groupby("model")["delta_mean_p"].count().max()) if len(comparisons) else 1
    power = power_table(df, max(1, family))
    claimed = hypotheses_table(df, margin, correction) if hypotheses else None
    df.drop(columns=INTERNAL).to_csv(out / "results.csv", index=False)
    keep(out / "results.csv")
    # Curves, matrix and estimates are computed from the same trials (df) that results.csv holds.
    curves, cells = curve_table(df), transfer_matrix(comparisons)
    estimates = read_estimates(dirs)
    points = candidates(comparisons, estimates) if estimates is not None else None
    per_cell = realised_cells(df) if points is not None else None
    predictions = prediction_table(points, per_cell) if points is not None else None
    searches = search_table(points, arm_seconds(df), per_cell) if points is not None else None
    if claimed is not None and not claimed.empty:
        claimed.to_csv(out / HYPOTHESES_FILE, index=False)
        keep(out / HYPOTHESES_FILE)
    appendix = (hypotheses_section(claimed, correction) + power_section(power) + curve_section(curves) + matrix_section(cells, correction)
                + contrast_section(versus) + heterogeneity_section(specific)
                + (prediction_section(predictions, trial_seconds(df)) if predictions is not None else [])
                + (search_section(searches) if searches is not None else []))
    for name, table in ((CLAIMS_FILE, claims), (POWER_FILE, power)):
        if not table.empty:
            table.to_csv(out / name, index=False)
            keep(out / name)
    if not claims.empty:
        # the claims alone, as a page other docs embed verbatim (docs/results/verdict-matrix.md does)
        (out / CLAIMS_MD).write_text("\n".join(claims_section(claims, correction)[2:] + [""]), encoding="utf-8")
        keep(out / CLAIMS_MD)
    if predictions is not None and not predictions.empty:
        predictions.to_csv(out / PREDICTIONS_FILE, index=False)
        keep(out / PREDICTIONS_FILE)
    if searches is not None and not searches.empty:
        searches.to_csv(out / SEARCH_FILE, index=False)
        keep(out / SEARCH_FILE)
    if not versus.empty:
        versus.to_csv(out / CONTRASTS_FILE, index=False)
        keep(out / CONTRASTS_FILE)
    if not cells.empty:
        cells.to_csv(out / MATRIX_FILE, index=False)
        keep(out / MATRIX_FILE)
        with paper_style():
            plot_transfer_matrix(cells, out / "transfer_matrix.png", "Transfer matrix",
                                 star_note=f"* : significant after {CORRECTIONS[correction]} correction "
                                           "over the matrix's cells (adjusted p < 0.05)")
        keep(out / "transfer_matrix.png")
    (out / "summary.md").write_text(
        render_summary(df, arms, comparisons, dirs, factor, factors, appendix, correction, margin,
                       claims_section(claims, correction)), encoding="utf-8")
    keep(out / "summary.md")

    print(f"{len(df)} trials ({int((~df['scored']).sum())} failed, {int(df['at_baseline'].sum())} "
          f"at or below the trivial baseline); dropped {df.attrs['duplicates_dropped']} duplicate(s) by config_hash")
    several_models = df["model"].nunique() > 1
    for model, target, section in sections(df):
        stem = _slug(f"{target}_{model}" if several_models else target)
        metric = metric_names(section) or "metric"
        if section["scored"].any():
            with paper_style():
                plot_violins(section, out / f"violin_{stem}.png",
                             f"{target}: dev {metric} over the grid ({model})")
            keep(out / f"violin_{stem}.png")
        curve = curves[(curves["model"] == model) & (curves["target"] == target)] if len(curves) else curves
        if len(curve):
            with paper_style():
                plot_tuning_curves(curve, out / f"curves_{stem}.png",
                                   f"{target}: expected best dev {metric} after n trials ({model})")
            keep(out / f"curves_{stem}.png")
        mine = points[(points["model"] == model) & (points["target"] == target)] if points is not None else []
        if len(mine):
            with paper_style():
                plot_predicted(mine, out / f"predicted_{stem}.png", f"{target}: predicted against realised ({model})")
            keep(out / f"predicted_{stem}.png")
        if factors is not None:
            ft = factors[(factors["model"] == model) & (factors["target"] == target)]
            if len(ft):
                path = out / f"factor_{stem}_{_slug(factor)}.png"
                with paper_style():
                    plot_factor(ft, factor, path, f"{target}: dev {metric} by {factor} ({model})", metric)
                keep(path)
    return written
