"""The report's figures: the paper's violin plot of dev scores per arm, a factor's line plot, tuning
curves, the transfer matrix and predicted against realised."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from stilts_lab.report.arms import VANILLA, arm_label, arm_order, value_sort_key
from stilts_lab.report.collect import SCORE, metric_names


def new_figure(width: float, height: float) -> Figure:
    # A bare Figure renders with Agg on savefig without touching pyplot's global backend,
    # so the report works headless and does not disturb an interactive session importing it.
    return Figure(figsize=(width, height), dpi=150, layout="constrained")


def paper_style():
    """seaborn's look as a context, not sns.set_theme(), which would restyle the caller's plots."""
    return matplotlib.rc_context({**sns.axes_style("whitegrid"),
                                  **sns.plotting_context("paper", font_scale=1.3)})


def _tick_label(arm: pd.DataFrame) -> str:
    # one setting per line: arms can differ in several
    lines = [arm_label(arm["intermediate"].iloc[0])] + [s for s in arm["settings"].iloc[0].split(", ") if s]
    failed = int((~arm["scored"]).sum())
    return "\n".join(lines) + f"\nn={int(arm['scored'].sum())}" + (f" (+{failed} failed)" if failed else "")


def plot_violins(section: pd.DataFrame, path: Path, title: str) -> None:
    """The paper's figure: the distribution of dev scores over the grid, one violin per arm."""
    order = arm_order(section)
    scored = section[section["scored"]].astype({SCORE: float})
    wide = section["settings"].str.len().max() > 20  # a setting per line needs room
    fig = new_figure((2.6 if wide else 1.7) * len(order) + 2.8, 5.2)
    ax = fig.add_subplot()
    # cut=0: the violin never extends past the observed scores.
    sns.violinplot(data=scored, x="arm", y=SCORE, order=order, hue="arm", hue_order=order,
                   palette="pastel", legend=False, cut=0, inner=None, density_norm="width",
                   linewidth=1, ax=ax)
    # Trials drawn by hand rather than sns.stripplot, whose jitter comes from the global numpy
    # RNG: a seeded jitter keeps the figure identical from one report run to the next.
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(scored))
    x = scored["arm"].map({key: i for i, key in enumerate(order)}).to_numpy() + jitter
    y, stuck = scored[SCORE].to_numpy(), scored["at_baseline"].to_numpy(bool)
    ax.scatter(x[~stuck], y[~stuck], s=22, color="0.15", alpha=0.8, lw=0, zorder=3)
    ax.scatter(x[stuck], y[stuck], s=60, color="crimson", marker="X", lw=0, zorder=4)
    for baseline in sorted(set(section["trivial_baseline"].dropna().astype(float))):
        # Over the violins, under the trials: the line must stay visible across each violin.
        ax.axhline(baseline, ls="--", lw=1.2, color="0.35", zorder=2)

    ax.set_xticks(range(len(order)), [_tick_label(section[section["arm"] == key]) for key in order],
                  fontsize="small")
    ax.set(xlabel="intermediate task", ylabel=f"dev {metric_names(section) or 'metric'}", title=title)
    ax.legend(handles=[
        Line2D([], [], ls="", marker="o", color="0.15", label="trial"),
        Line2D([], [], ls="", marker="X", color="crimson", markersize=8, label="trial at or below trivial baseline"),
        Line2D([], [], ls="--", color="0.35", label="trivial baseline")],
        loc="best", fontsize="small", framealpha=0.9)
    fig.savefig(path)


def plot_factor(table: pd.DataFrame, key: str, path: Path, title: str, metric: str) -> None:
    """Mean dev score per factor value, one line per arm. An arm with no value for the factor
    (vanilla has no intermediate.train_size) is drawn as a horizontal reference band."""
    lines = list(dict.fromkeys(table["line"]))
    pointed = [line for line in lines if set(table.loc[table["line"] == line, "value"]) - {"null"}]
    # "null" stays on the x axis when a pointed line has it (e.g. train_size null = all the data).
    values = sorted(set(table.loc[table["line"].isin(pointed), "value"]), key=value_sort_key)
    xs = {v: i for i, v in enumerate(values)}
    palette = dict(zip(lines, sns.color_palette("deep", len(lines))))
    fig = new_figure(max(5.5, 1.2 * len(values) + 3) + 3, 4.5)  # + room for the legend
    ax = fig.add_subplot()
    for line in lines:
        rows = table[table["line"] == line]
        colour = palette[line]
        label = arm_label(rows["intermediate"].iloc[0], rows["settings"].iloc[0])
        if line not in pointed:
            mean, ci = rows["mean"].iloc[0], rows["ci"].iloc[0]
            band = ci.low is not None
            ax.axhline(mean, color=colour, ls="--", lw=1.5,
                       label=f"{label} (n={rows['n'].iloc[0]}" + (", band: 95% CI)" if band else ")"))
            if band:
                ax.axhspan(ci.low, ci.high, color=colour, alpha=0.12, lw=0)
            continue
        rows = rows[rows["value"].isin(xs)]
        # A small horizontal offset per line keeps overlapping error bars apart.
        offset = 0.06 * (pointed.index(line) - (len(pointed) - 1) / 2)
        x = np.array([xs[v] for v in rows["value"]]) + offset
        # A level with one trial has no interval: its point is drawn without a bar.
        lo = [m - c.low if c.low is not None else np.nan for m, c in zip(rows["mean"], rows["ci"])]
        hi = [c.high - m if c.high is not None else np.nan for m, c in zip(rows["mean"], rows["ci"])]
        ax.errorbar(x, rows["mean"], yerr=[lo, hi], color=colour, marker="o", capsize=4,
                    lw=1.8, label=label)
    ax.set_xticks(range(len(values)), values)
    if values:
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set(xlabel=key, ylabel=f"mean dev {metric} (95% CI)")
    fig.suptitle(title)  # over the figure: the axes alone are narrower than the title
    # Outside the axes: error bars reach anywhere inside them.
    ax.legend(title="arm", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(path)


def _curve(ax, curve: pd.DataFrame, budget: int, colour, lw: float, band_alpha: float, ylim) -> bool:
    """One arm's expected-best curve and band: solid up to the equal budget, faded and dashed beyond
    it (not comparable across arms). Returns whether its band had to be clipped to `ylim`."""
    clipped = False
    for part, faded in ((curve[curve["n"] <= budget], False), (curve[curve["n"] >= budget], True)):
        if part.empty or (faded and len(part) < 2):
            continue  # beyond the budget, a lone point is the budget itself: nothing to add
        alpha = 0.35 if faded else 1.0
        ax.plot(part["n"], part["expected_max"], color=colour, lw=lw, ls="--" if faded else "-",
                marker="o", ms=3, alpha=alpha)
        if part["low"].notna().all():
            # Clipped by hand: the bands span most of the metric's range, and left to autoscale
            # they would squeeze the curves, the figure's point, into a few pixels.
            low, high = part["low"].clip(*ylim), part["high"].clip(*ylim)
            clipped |= bool((part["low"] < ylim[0]).any() or (part["high"] > ylim[1]).any())
            ax.fill_between(part["n"], low, high, color=colour, alpha=band_alpha * alpha, lw=0)
    return clipped


def plot_tuning_curves(curves: pd.DataFrame, path: Path, title: str) -> Figure:
    """Expected best dev score after n trials (curves.py), one panel per intermediate arm with the
    vanilla arm it is compared with in grey, each with its band; a dotted line at the equal
    budget n* (curves.equal_budget), the only n where arms compare fairly."""
    from stilts_lab.report.curves import CONFIDENCE, equal_budget
    arms = {key: curve for key, curve in curves.groupby("arm", sort=False)}
    firsts = {key: curve.iloc[0] for key, curve in arms.items()}
    panels = [key for key, first in firsts.items() if first["intermediate"] != VANILLA] or list(arms)
    budget = equal_budget(curves)
    # y from the curves, not the bands: the bands run over most of the metric's range.
    low, high = curves["expected_max"].min(), curves["expected_max"].max()
    pad = max(0.15 * (high - low), 0.005)
    ylim = (low - pad, high + pad)

    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = new_figure(3.6 * ncols + 0.8, 2.9 * nrows + 1.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    colour, grey = sns.color_palette("deep")[0], "0.45"
    clipped = False
    for ax, key in zip(axes, panels):
        reference = firsts[key].get("vanilla_arm")
        if reference in arms and reference != key:
            clipped |= _curve(ax, arms[reference], budget, grey, 1.4, 0.10, ylim)
        clipped |= _curve(ax, arms[key], budget, colour, 2.0, 0.16, ylim)
        ax.axvline(budget, ls=":", lw=1.5, color="0.2")
        first = firsts[key]
        ax.set_title(f"{arm_label(first['intermediate'], first['settings'])} (n={int(first['trials'])})",
                     fontsize="medium")
        # Trial counts are whole: without this the axis reads 2.5 trials.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(*ylim)
    for i, ax in enumerate(axes):
        if i >= len(panels):
            ax.remove()
        elif i + ncols >= len(panels):  # the lowest panel of its column (a fig.supxlabel would meet the legend)
            ax.set_xlabel("trials n")
            ax.xaxis.set_tick_params(labelbottom=True)
    band = f"{CONFIDENCE:.0%} band" + (", clipped to the axes" if clipped else "")
    fig.suptitle(f"{title}\nshaded: {band}; dotted: equal budget n={budget}", fontsize="medium")
    fig.supylabel(f"expected best dev {curves['metric_name'].iloc[0] or 'metric'}")
    # Below the panels: inside any of them it would cover curves.
    fig.legend(handles=[
        Line2D([], [], color=colour, lw=2, marker="o", ms=3, label="intermediate arm (panel title)"),
        Line2D([], [], color=grey, lw=1.4, marker="o", ms=3, label="vanilla"),
        Patch(color=colour, alpha=0.16, label=band),
        Line2D([], [], color=colour, lw=2, ls="--", alpha=0.35, label="beyond the equal budget"),
        Line2D([], [], color="0.2", lw=1.5, ls=":", label=f"equal budget n={budget}")],
        loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    fig.savefig(path)
    return fig


HOLM_NOTE = "* : significant after Holm correction (adjusted p < 0.05)"


def plot_transfer_matrix(cells: pd.DataFrame, path: Path, title: str, star_note: str = HOLM_NOTE) -> Figure:
    """Two heatmaps (Δ mean, Δ max): rows intermediate arms, columns targets in their own units.
    Each column is coloured on its own scale (its largest |Δ|), since the metrics differ, hence
    one colour bar in those relative units; the numbers are the Δ, and * marks a cell whose
    delta_{stat}_significant is true, as `star_note` (the caption) says."""
    from stilts_lab.report.matrix import wide
    rows, columns = list(dict.fromkeys(cells["row"])), list(wide(cells, "mean").columns)
    fig = new_figure(2.0 * len(columns) * 2 + 4.5, 0.6 * len(rows) + 2.8)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, stat in zip(axes, ("mean", "max")):
        values = wide(cells, stat)
        scale = values.abs().max().replace(0, 1.0)
        marks = cells.pivot(index="row", columns="column", values=f"delta_{stat}_significant").reindex(
            index=rows, columns=columns)
        text = values.map(lambda v: "" if pd.isna(v) else f"{v:+.3f}") + marks.map(lambda m: "*" if m is True else "")
        sns.heatmap(values / scale, annot=text, fmt="", cmap="RdBu", vmin=-1, vmax=1, cbar=False,
                    linewidths=0.5, linecolor="white", ax=ax)
        ax.set(title=f"Δ {stat} vs vanilla", xlabel="target (metric)", ylabel="intermediate" if stat == "mean" else "")
    # Both heatmaps share the -1..1 scale, so one bar serves them.
    bar = fig.colorbar(ScalarMappable(Normalize(-1, 1), "RdBu"), ax=list(axes), shrink=0.9, pad=0.02)
    bar.set_label("Δ / column's max |Δ|")
    fig.suptitle(title)
    fig.supxlabel(star_note, fontsize="small")  # the caption: laid out below the axes, never over them
    fig.savefig(path)
    return fig


def plot_predicted(points: pd.DataFrame, path: Path, title: str) -> None:
    """Predicted (an estimator's score) against realised (Δ mean), one panel per estimator."""
    estimators = sorted(set(points["estimator"]))
    fig = new_figure(4.2 * len(estimators) + 0.5, 4.2)
    for ax, estimator in zip(np.atleast_1d(fig.subplots(1, len(estimators))), estimators):
        group = points[points["estimator"] == estimator]
        ax.scatter(group["score"], group["delta_mean"], s=40, color="0.15", zorder=3)
        for r in group.itertuples():
            ax.annotate(arm_label(r.intermediate), (r.score, r.delta_mean), fontsize="x-small",
                        xytext=(4, 4), textcoords="offset points")
        ax.axhline(0, ls="--", lw=1, color="0.5")
        ax.set(xlabel=f"{estimator} score", ylabel="realised Δ mean vs vanilla", title=estimator)
    fig.suptitle(title)
    fig.savefig(path)
