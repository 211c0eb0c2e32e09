"""Report over finished sweeps: results.csv, summary.md, violin plots, factor plots.

    python -m stilts_lab.report multirun/2026-01-01 [more dirs] [--out DIR] [--factor intermediate.train_size]

Every metrics.json found (recursively) under the given directories is one trial. Trials are
grouped into arms, one per (model, target, intermediate); the vanilla arm is intermediate "none".
Diverged trials stay in every statistic: instability is the paper's point. Failed trials have no
score: they are counted and shown, never averaged.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stilts_lab.errors import StiltsError
from stilts_lab.report_stats import (RESAMPLES, bootstrap_delta_ci, bootstrap_mean_ci,
                                     paired_tests)
from stilts_lab.results import METRICS_FILE, read_metrics

VANILLA = "none"
# Top-level metrics.json fields copied into results.csv, in this order.
TRIAL_FIELDS = ["config_hash", "model", "intermediate", "target", "seed", "best_dev_metric",
                "last_dev_metric", "metric_name", "trivial_baseline", "status", "train_seconds",
                "examples_per_second"]
# Trials of two arms are paired when they share the seed and these target-stage hyperparameters.
PAIR_HPARAMS = ["lr", "batch_size", "warmup_ratio", "max_epochs", "train_size"]
SCORE = "best_dev_metric"


# ---------------------------------------------------------------- collecting trials

def collect_trials(dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per trial found under `dirs`. Re-runs (same config_hash) keep the newest file;
    df.attrs records "duplicates_dropped" and "unreadable" (files read_metrics could not parse).
    Columns: TRIAL_FIELDS, path, hparams.*, config.* (flattened), and the derived booleans
    scored (has a score, not failed) and diverged."""
    paths = sorted({p for d in dirs for p in Path(d).rglob(METRICS_FILE) if p.is_file()})
    rows, configs, unreadable = [], [], 0
    for path in paths:
        metrics = read_metrics(path)
        if metrics is None:
            unreadable += 1
            continue
        row = {field: metrics.get(field) for field in TRIAL_FIELDS}
        row["path"] = str(path)
        row["_mtime"] = path.stat().st_mtime
        row.update({f"hparams.{k}": v for k, v in (metrics.get("hparams") or {}).items()})
        rows.append(row)
        configs.append(metrics.get("config") or {})
    if not rows:
        empty = pd.DataFrame(columns=TRIAL_FIELDS + ["path"])
        empty.attrs.update(duplicates_dropped=0, unreadable=unreadable)
        return empty

    config = pd.json_normalize(configs, sep=".").add_prefix("config.")
    df = pd.concat([pd.DataFrame(rows), config], axis=1)

    # Oldest first, so keep="last" keeps the newest re-run of each config.
    df = df.sort_values("_mtime", kind="stable")
    rerun = df["config_hash"].notna() & df.duplicated("config_hash", keep="last")
    df = df[~rerun].drop(columns="_mtime").sort_values("path").reset_index(drop=True)

    df["scored"] = df[SCORE].notna() & (df["status"] != "failed")
    at_or_below_baseline = df[SCORE].notna() & df["trivial_baseline"].notna() & (
        df[SCORE].astype(float) <= df["trivial_baseline"].astype(float))
    df["diverged"] = df["scored"] & ((df["status"] == "diverged") | at_or_below_baseline)
    df.attrs.update(duplicates_dropped=int(rerun.sum()), unreadable=unreadable)
    return df


def intermediate_order(names: Iterable[str]) -> list[str]:
    """Vanilla first, then the intermediate tasks alphabetically."""
    names = set(names)
    return ([VANILLA] if VANILLA in names else []) + sorted(names - {VANILLA})


def _sections(df: pd.DataFrame):
    """(model, target) groups: arms are only compared within the same encoder and target."""
    for (model, target), section in df.groupby(["model", "target"], sort=True, dropna=False):
        yield model, target, section


# ---------------------------------------------------------------- statistics tables

def arm_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, target, intermediate): counts and score statistics over the scored trials."""
    rows = []
    for model, target, section in _sections(df):
        for name in intermediate_order(section["intermediate"]):
            arm = section[section["intermediate"] == name]
            scores = arm.loc[arm["scored"], SCORE].astype(float)
            n = len(scores)
            rows.append(dict(
                model=model, target=target, intermediate=name,
                metric_name=", ".join(sorted(set(arm["metric_name"].dropna()))),
                trials=n, failed=int((~arm["scored"]).sum()), diverged=int(arm["diverged"].sum()),
                mean=scores.mean() if n else None,
                std=scores.std(ddof=1) if n > 1 else None,
                median=scores.median() if n else None,
                min=scores.min() if n else None, max=scores.max() if n else None))
    return pd.DataFrame(rows)


def _pair_keys(df: pd.DataFrame) -> pd.Series:
    """The cell of each trial: seed plus target hyperparameters, one hashable key (NaN-safe)."""
    values = df.reindex(columns=["seed"] + [f"hparams.{h}" for h in PAIR_HPARAMS])
    keys = [repr(tuple(None if pd.isna(v) else v for v in row))
            for row in values.itertuples(index=False)]
    return pd.Series(keys, index=df.index, dtype=object)


def comparison_table(df: pd.DataFrame) -> pd.DataFrame:
    """Each non-vanilla arm against the vanilla arm of its (model, target)."""
    rows = []
    for model, target, section in _sections(df):
        scored = section[section["scored"]].assign(_cell=lambda d: _pair_keys(d))
        vanilla = scored[scored["intermediate"] == VANILLA]
        for name in intermediate_order(section["intermediate"]):
            if name == VANILLA:
                continue
            arm = scored[scored["intermediate"] == name]
            row = dict(model=model, target=target, intermediate=name, no_delta="")
            a, v = arm[SCORE].to_numpy(float), vanilla[SCORE].to_numpy(float)
            if len(a) and len(v):
                row.update(delta_mean=a.mean() - v.mean(), delta_max=a.max() - v.max())
                row["delta_mean_ci"] = bootstrap_delta_ci(a, v, np.mean)
                row["delta_max_ci"] = bootstrap_delta_ci(a, v, np.max)
            else:
                row["no_delta"] = "no scored vanilla trials" if len(a) else "no scored trials"
            # A cell holding several trials of one arm (e.g. a sweep over the intermediate's
            # training size) contributes its mean, so every cell is one pair.
            cells = pd.concat([arm.groupby("_cell")[SCORE].mean().rename("arm"),
                               vanilla.groupby("_cell")[SCORE].mean().rename("vanilla")],
                              axis=1, join="inner")
            row["paired"] = paired_tests((cells["arm"] - cells["vanilla"]).to_numpy(float))
            rows.append(row)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return arm_table(df), comparison_table(df)


def factor_column(df: pd.DataFrame, key: str) -> str:
    for column in (key, f"config.{key}"):
        if column in df.columns:
            return column
    near = [c.removeprefix("config.") for c in df.columns if key.split(".")[-1] in c]
    raise StiltsError(f"--factor {key}: no such config key in the trials"
                      + (f" (did you mean {', '.join(near[:5])}?)" if near else ""))


def _value_label(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _value_sort_key(label: str):
    """Numbers numerically, then strings, "null" last."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (2 if label == "null" else 1, 0.0, label)


def factor_table(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per (model, target, intermediate, factor value): n, mean, std, bootstrap 95% CI of the mean."""
    column = factor_column(df, key)
    scored = df[df["scored"]].assign(value=lambda d: d[column].map(_value_label))
    rows = []
    for model, target, section in _sections(scored):
        for name in intermediate_order(section["intermediate"]):
            arm = section[section["intermediate"] == name]
            for label in sorted(set(arm["value"]), key=_value_sort_key):
                scores = arm.loc[arm["value"] == label, SCORE].to_numpy(float)
                rows.append(dict(model=model, target=target, intermediate=name, value=label,
                                 n=len(scores), mean=scores.mean(),
                                 std=scores.std(ddof=1) if len(scores) > 1 else None,
                                 ci=bootstrap_mean_ci(scores)))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- plots

def _arm_label(name: str) -> str:
    return "vanilla" if name == VANILLA else name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))


def _new_figure(width: float, height: float) -> Figure:
    # A bare Figure renders with Agg on savefig without touching pyplot's global backend,
    # so the report works headless and does not disturb an interactive session importing it.
    return Figure(figsize=(width, height), dpi=150, layout="constrained")


def _paper_style():
    """seaborn's look as a context, not sns.set_theme(), which would restyle the caller's plots."""
    return matplotlib.rc_context({**sns.axes_style("whitegrid"),
                                  **sns.plotting_context("paper", font_scale=1.3)})


def plot_violins(section: pd.DataFrame, path: Path, title: str) -> None:
    """The paper's figure: the distribution of dev scores over the grid, one violin per start."""
    order = intermediate_order(section["intermediate"])
    scored = section[section["scored"]].astype({SCORE: float})
    fig = _new_figure(1.7 * len(order) + 2.8, 4.8)
    ax = fig.add_subplot()
    # cut=0: the violin never extends past the observed scores.
    sns.violinplot(data=scored, x="intermediate", y=SCORE, order=order, hue="intermediate",
                   hue_order=order, palette="pastel", legend=False, cut=0, inner=None,
                   density_norm="width", linewidth=1, ax=ax)
    # Trials drawn by hand rather than sns.stripplot, whose jitter comes from the global numpy
    # RNG: a seeded jitter keeps the figure identical from one report run to the next.
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(scored))
    x = scored["intermediate"].map({name: i for i, name in enumerate(order)}).to_numpy() + jitter
    y, diverged = scored[SCORE].to_numpy(), scored["diverged"].to_numpy(bool)
    ax.scatter(x[~diverged], y[~diverged], s=22, color="0.15", alpha=0.8, lw=0, zorder=3)
    ax.scatter(x[diverged], y[diverged], s=60, color="crimson", marker="X", lw=0, zorder=4)
    for baseline in sorted(set(section["trivial_baseline"].dropna().astype(float))):
        # Over the violins, under the trials: the line must stay visible across each violin.
        ax.axhline(baseline, ls="--", lw=1.2, color="0.35", zorder=2)

    labels = []
    for name in order:
        arm = section[section["intermediate"] == name]
        failed = int((~arm["scored"]).sum())
        labels.append(f"{_arm_label(name)}\nn={int(arm['scored'].sum())}"
                      + (f" (+{failed} failed)" if failed else ""))
    ax.set_xticks(range(len(order)), labels)
    metric = ", ".join(sorted(set(section["metric_name"].dropna()))) or "metric"
    ax.set(xlabel="intermediate task", ylabel=f"dev {metric}", title=title)
    ax.legend(handles=[
        Line2D([], [], ls="", marker="o", color="0.15", label="trial"),
        Line2D([], [], ls="", marker="X", color="crimson", markersize=8, label="diverged trial"),
        Line2D([], [], ls="--", color="0.35", label="majority baseline")],
        loc="best", fontsize="small", framealpha=0.9)
    fig.savefig(path)


def plot_factor(table: pd.DataFrame, key: str, path: Path, title: str, metric: str) -> None:
    """Mean dev score per factor value, one line per intermediate. An arm with no value for the
    factor (vanilla has no intermediate.train_size) is drawn as a horizontal reference band."""
    order = intermediate_order(table["intermediate"])
    lined = [n for n in order if set(table.loc[table["intermediate"] == n, "value"]) - {"null"}]
    # "null" stays on the x axis when a lined arm has it (e.g. train_size null = all the data).
    values = sorted(set(table.loc[table["intermediate"].isin(lined), "value"]), key=_value_sort_key)
    xs = {v: i for i, v in enumerate(values)}
    palette = dict(zip(order, sns.color_palette("deep", len(order))))
    fig = _new_figure(max(5.5, 1.2 * len(values) + 3) + 3, 4.5)  # + room for the legend
    ax = fig.add_subplot()
    for name in order:
        rows = table[table["intermediate"] == name]
        colour, label = palette[name], _arm_label(name)
        if name not in lined:
            mean, (lo, hi) = rows["mean"].iloc[0], rows["ci"].iloc[0]
            ax.axhline(mean, color=colour, ls="--", lw=1.5,
                       label=f"{label} (n={rows['n'].iloc[0]}, band: 95% CI)")
            ax.axhspan(lo, hi, color=colour, alpha=0.12, lw=0)
            continue
        rows = rows[rows["value"].isin(xs)]
        # A small horizontal offset per line keeps overlapping error bars apart.
        offset = 0.06 * (lined.index(name) - (len(lined) - 1) / 2)
        x = np.array([xs[v] for v in rows["value"]]) + offset
        lo = rows["mean"] - rows["ci"].str[0]
        hi = rows["ci"].str[1] - rows["mean"]
        ax.errorbar(x, rows["mean"], yerr=[lo, hi], color=colour, marker="o", capsize=4,
                    lw=1.8, label=label)
    ax.set_xticks(range(len(values)), values)
    if values:
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set(xlabel=key, ylabel=f"mean dev {metric} (95% CI)")
    fig.suptitle(title)  # over the figure: the axes alone are narrower than the title
    # Outside the axes: error bars reach anywhere inside them.
    ax.legend(title="intermediate", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(path)


# ---------------------------------------------------------------- summary.md

def _num(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _p(p: float | None, note: str) -> str:
    if p is None:
        return f"n/a ({note})"
    # 4 decimals would print a tiny p-value as 0.0000.
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _ci(ci) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _md_table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def render_summary(df: pd.DataFrame, arms: pd.DataFrame, comparisons: pd.DataFrame,
                   dirs: Sequence[Path], factor: str | None = None,
                   factors: pd.DataFrame | None = None) -> str:
    lines = ["# Intermediate-task fine-tuning report", "",
             f"{len(df)} trials from {', '.join(str(d) for d in dirs)}; "
             f"{int((~df['scored']).sum())} failed, {int(df['diverged'].sum())} diverged."]
    if df.attrs.get("duplicates_dropped"):
        lines.append(f"Dropped {df.attrs['duplicates_dropped']} duplicate trial(s) "
                     "(same config_hash; kept the newest metrics.json).")
    if df.attrs.get("unreadable"):
        lines.append(f"Skipped {df.attrs['unreadable']} unreadable metrics.json file(s).")

    for model, target, section in _sections(df):
        key = (arms["model"] == model) & (arms["target"] == target)
        metric = ", ".join(sorted(set(section["metric_name"].dropna()))) or "n/a"
        baselines = ", ".join(_num(b) for b in sorted(set(section["trivial_baseline"].dropna())))
        lines += ["", f"## {target} (model {model}): dev {metric}",
                  "", f"Majority-class baseline: {baselines or 'n/a'}.", ""]
        lines += _md_table(
            ["intermediate", "trials", "failed", "diverged", "mean", "std", "median", "min", "max"],
            ([_arm_label(r.intermediate), r.trials, r.failed, r.diverged, _num(r.mean), _num(r.std),
              _num(r.median), _num(r.min), _num(r.max)] for r in arms[key].itertuples()))

        comp = comparisons[(comparisons["model"] == model) & (comparisons["target"] == target)] \
            if len(comparisons) else comparisons
        if len(comp):
            lines += ["", f"### Against vanilla (difference in dev {metric})", ""]
            rows = []
            for r in comp.to_dict("records"):
                t = r["paired"]
                if r["no_delta"]:
                    mean_cell = max_cell = f"n/a ({r['no_delta']})"
                else:
                    mean_cell = f"{_num(r['delta_mean'])} {_ci(r['delta_mean_ci'])}"
                    max_cell = f"{_num(r['delta_max'])} {_ci(r['delta_max_ci'])}"
                rows.append([r["intermediate"], mean_cell, max_cell, t.pairs, _num(t.mean_diff),
                             _p(t.wilcoxon_p, t.wilcoxon_note), _p(t.ttest_p, t.ttest_note)])
            lines += _md_table(["intermediate", "Δ mean [95% CI]", "Δ max [95% CI]", "pairs",
                                "mean paired Δ", "Wilcoxon p", "paired t p"], rows)

        if factors is not None and len(factors):
            ft = factors[(factors["model"] == model) & (factors["target"] == target)]
            lines += ["", f"### Factor: {factor}", ""]
            lines += _md_table(["intermediate", factor, "n", "mean", "std", "mean 95% CI"],
                               ([_arm_label(r.intermediate), r.value, r.n, _num(r.mean),
                                 _num(r.std), _ci(r.ci)] for r in ft.itertuples()))

    lines += ["", "How to read: `trials` are the scored trials every statistic uses, diverged ones "
              "included (status diverged, or best dev metric at or below the majority baseline); "
              "failed trials have no score and only appear in `failed`. std is the sample std "
              f"(n-1). Δ is intermediate minus vanilla; its interval is a 95% percentile bootstrap "
              f"({RESAMPLES:,} resamples, each arm resampled independently, fixed seed); an "
              "interval that excludes 0 suggests a real difference. The bootstrap of the max is "
              "biased low with few trials: read Δ max as rough. Pairs share the seed and target "
              f"hyperparameters ({', '.join(PAIR_HPARAMS)}); a cell holding several trials of one "
              "arm contributes their mean. Δ > 0 favours the intermediate task.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- entry points

def write_report(dirs: Sequence[Path], out: Path | None = None,
                 factor: str | None = None) -> dict[str, Path]:
    """Write results.csv, summary.md and the plots into `out`; returns {file name: path}."""
    dirs = [Path(d) for d in dirs]
    df = collect_trials(dirs)
    if df.empty:
        unreadable = f" ({df.attrs['unreadable']} unreadable)" if df.attrs.get("unreadable") else ""
        raise StiltsError(f"no {METRICS_FILE} found under {', '.join(str(d) for d in dirs)}"
                          + unreadable)
    out = Path(out) if out is not None else dirs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def keep(path: Path) -> None:
        written[path.name] = path

    factors = factor_table(df, factor) if factor else None
    arms, comparisons = summarize(df)
    df.to_csv(out / "results.csv", index=False)
    keep(out / "results.csv")
    (out / "summary.md").write_text(
        render_summary(df, arms, comparisons, dirs, factor, factors), encoding="utf-8")
    keep(out / "summary.md")

    print(f"{len(df)} trials ({int((~df['scored']).sum())} failed, {int(df['diverged'].sum())} "
          f"diverged); dropped {df.attrs['duplicates_dropped']} duplicate(s) by config_hash")
    several_models = df["model"].nunique() > 1
    for model, target, section in _sections(df):
        stem = _slug(f"{target}_{model}" if several_models else target)
        metric = ", ".join(sorted(set(section["metric_name"].dropna()))) or "metric"
        if section["scored"].any():
            with _paper_style():
                plot_violins(section, out / f"violin_{stem}.png",
                             f"{target}: dev {metric} over the grid ({model})")
            keep(out / f"violin_{stem}.png")
        if factors is not None:
            ft = factors[(factors["model"] == model) & (factors["target"] == target)]
            if len(ft):
                path = out / f"factor_{stem}_{_slug(factor)}.png"
                with _paper_style():
                    plot_factor(ft, factor, path, f"{target}: dev {metric} by {factor} ({model})",
                                metric)
                keep(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stilts_lab.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep directories, searched recursively")
    parser.add_argument("--out", type=Path, help="output directory (default: FIRST_DIR/report)")
    parser.add_argument("--factor", help="config key to plot against, e.g. intermediate.train_size")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.dirs, args.out, args.factor)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
