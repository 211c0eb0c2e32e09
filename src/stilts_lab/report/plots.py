"""The report's figures: the paper's violin plot of dev scores per arm, and a factor's line plot."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stilts_lab.report.arms import arm_label, arm_order, value_sort_key
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
    y, diverged = scored[SCORE].to_numpy(), scored["diverged"].to_numpy(bool)
    ax.scatter(x[~diverged], y[~diverged], s=22, color="0.15", alpha=0.8, lw=0, zorder=3)
    ax.scatter(x[diverged], y[diverged], s=60, color="crimson", marker="X", lw=0, zorder=4)
    for baseline in sorted(set(section["trivial_baseline"].dropna().astype(float))):
        # Over the violins, under the trials: the line must stay visible across each violin.
        ax.axhline(baseline, ls="--", lw=1.2, color="0.35", zorder=2)

    ax.set_xticks(range(len(order)), [_tick_label(section[section["arm"] == key]) for key in order],
                  fontsize="small")
    ax.set(xlabel="intermediate task", ylabel=f"dev {metric_names(section) or 'metric'}", title=title)
    ax.legend(handles=[
        Line2D([], [], ls="", marker="o", color="0.15", label="trial"),
        Line2D([], [], ls="", marker="X", color="crimson", markersize=8, label="diverged trial"),
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


def plot_tuning_curves(curves: pd.DataFrame, path: Path, title: str) -> None:
    """Expected best dev score after n trials, one line per arm, its band shaded (curves.py)."""
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    palette = sns.color_palette("deep", curves["arm"].nunique())
    for colour, (key, curve) in zip(palette, curves.groupby("arm", sort=False)):
        first = curve.iloc[0]
        label = arm_label(first["intermediate"], first["settings"])
        ax.plot(curve["n"], curve["expected_max"], color=colour, lw=2, marker="o", ms=3, label=label)
        if curve["low"].notna().all():
            ax.fill_between(curve["n"], curve["low"], curve["high"], color=colour, alpha=0.15, lw=0)
    ax.set(xlabel="trials n", ylabel=f"expected best dev {curves['metric_name'].iloc[0] or 'metric'}",
           title=title)
    ax.legend(fontsize="small")
    fig.savefig(path)


def plot_transfer_matrix(cells: pd.DataFrame, path: Path, title: str) -> None:
    """Two heatmaps (Δ mean, Δ max): rows intermediate arms, columns targets in their own units.
    Each column is coloured on its own scale (its largest |Δ|), since the metrics differ; the
    numbers are the Δ, and * marks a cell whose 95% interval excludes 0."""
    from stilts_lab.report.matrix import wide
    rows, columns = list(dict.fromkeys(cells["row"])), list(wide(cells, "mean").columns)
    fig = new_figure(2.0 * len(columns) * 2 + 3.5, 0.6 * len(rows) + 2.4)
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
    fig.suptitle(title)
    fig.savefig(path)


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
