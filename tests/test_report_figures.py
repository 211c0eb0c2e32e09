"""The report's figures, rendered and read back: what a reader needs is on them and nothing hides it."""
from __future__ import annotations

from pathlib import Path

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from stilts_lab.report import collect_trials
from stilts_lab.report.curves import curve_table, equal_budget, table_points
from stilts_lab.report.plots import paper_style, plot_transfer_matrix, plot_tuning_curves
from tests.test_report_roundtrip import CELLS, write_trial


@pytest.fixture
def curves(tmp_path: Path) -> pd.DataFrame:
    """rte: vanilla with 2 trials, hellaswag and realfake with 3 each, so the equal budget is 2
    and n runs over 1..3, where a default axis would tick 1.25, 1.5, ..."""
    root = tmp_path / "sweep"
    for name, scores in (("none", [0.55, 0.60]), ("hellaswag", [0.58, 0.62, 0.70]),
                         ("realfake", [0.50, 0.66, 0.64])):
        for n, ((seed, lr), score) in enumerate(zip(CELLS, scores)):
            write_trial(root / name / str(n), name, seed, lr, score)
    return curve_table(collect_trials([root]))


def _drawn(fig):
    # Laid out as savefig drew it, so the ticks and extents are the file's.
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_equal_budget_and_the_summary_points(curves):
    assert equal_budget(curves) == 2
    twelve = pd.DataFrame({"n": range(1, 13), "trials": 12})
    assert table_points(twelve) == [1, 3, 10, 12]  # no budget: as before
    assert table_points(twelve, budget=6) == [1, 3, 6]
    assert table_points(twelve.head(2).assign(trials=2), budget=2) == [1, 2]


def test_tuning_curves_one_panel_per_intermediate_arm_at_equal_budget(curves, tmp_path):
    path = tmp_path / "curves_rte.png"
    with paper_style():
        fig = plot_tuning_curves(curves, path, "rte")
    assert path.stat().st_size > 0
    renderer = _drawn(fig)
    axes = fig.axes
    assert [ax.get_title().split(" (")[0] for ax in axes] == ["hellaswag", "realfake"]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    for ax in axes:
        labels = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels() if t.get_text()]
        assert labels and all(label.lstrip("-").isdigit() for label in labels), labels
        # the equal budget: a vertical line at n* = 2, and the curve past it drawn apart (dashed)
        assert any(list(line.get_xdata()) == [2, 2] for line in ax.lines)
        beyond = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert beyond and min(min(line.get_xdata()) for line in beyond) == 2
        # y from the curves, which the bands (most of [0, 1]) would otherwise dwarf
        low, high = ax.get_ylim()
        assert low <= curves["expected_max"].min() and curves["expected_max"].max() <= high
        assert high - low < 0.5 * (curves["high"].max() - curves["low"].min())
    assert "clipped" in fig.get_suptitle() and "equal budget n=2" in fig.get_suptitle()
    legends = list(fig.legends) + [ax.get_legend() for ax in axes if ax.get_legend()]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in axes)
    texts = [t.get_text() for t in legends[0].get_texts()]
    assert "equal budget n=2" in texts and "vanilla" in texts


def test_each_panel_has_its_vanilla_reference(curves, tmp_path):
    with paper_style():
        fig = plot_tuning_curves(curves, tmp_path / "c.png", "rte")
    vanilla = curves.loc[curves["intermediate"] == "none", "expected_max"].to_numpy()
    for ax in fig.axes:
        assert any(np.allclose(line.get_ydata(), vanilla) for line in ax.lines if len(line.get_ydata()) == 2)


def _cells() -> pd.DataFrame:
    rows = []
    for row, deltas in (("hellaswag", (0.10, -0.02)), ("realfake", (-0.05, 0.30))):
        for (target, metric), delta in zip((("rte", "accuracy"), ("cola", "mcc")), deltas):
            rows.append(dict(model="m", target=target, row=row, column=f"{target} ({metric})",
                             delta_mean=delta, delta_max=delta / 2, delta_mean_significant=delta > 0.05,
                             delta_max_significant=False))
    return pd.DataFrame(rows)


def test_transfer_matrix_has_a_colour_bar_and_says_what_the_star_means(tmp_path):
    path = tmp_path / "transfer_matrix.png"
    with paper_style():
        fig = plot_transfer_matrix(_cells(), path, "Transfer matrix")
    assert path.stat().st_size > 0
    _drawn(fig)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "max |Δ|" in bars[0].get_ylabel()
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    assert any("Holm" in t and "*" in t for t in texts)
    assert "+0.100*" in texts and "+0.300*" in texts and "-0.020" in texts
    with paper_style():
        fig = plot_transfer_matrix(_cells(), path, "Transfer matrix", star_note="* : 95% interval excludes 0")
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    assert "* : 95% interval excludes 0" in texts and not any("Holm" in t for t in texts)
