"""Tuning curves, the transfer matrix, intermediate seeds and transferability estimates, on
synthetic sweeps whose answers are known by construction (no training)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stilts_lab.report import write_report
from stilts_lab.report.curves import tuning_curve
from stilts_lab.report.predict import ndcg, regret_at, spearman, top_pick
from tests.test_report import CELLS, write_trial

VANILLA_SCORES = [0.60, 0.62, 0.64, 0.66]
# Per (intermediate, target): the shift added to vanilla's score in every cell, so Δ mean = Δ max
# = the shift exactly; the spread (0.06) is small enough that every non-zero shift is significant.
SHIFTS = {("realfake", "rte"): 0.10, ("hellaswag", "rte"): 0.0, ("swag", "rte"): -0.10,
          ("realfake", "cola"): -0.20, ("hellaswag", "cola"): 0.30, ("swag", "cola"): 0.0}
METRIC = {"rte": "accuracy", "cola": "mcc"}


def test_tuning_curve_hand_computed():
    curve = tuning_curve(np.array([0.0, 1.0]), "accuracy")
    # E[max of 2 draws from {0, 1}] = 1 - P(both 0) = 0.75; n = 1 is the mean.
    assert curve["expected_max"].tolist() == pytest.approx([0.5, 0.75])
    assert (curve["low"] <= curve["expected_max"]).all() and (curve["expected_max"] <= curve["high"]).all()
    scores = np.array([0.5, 0.6, 0.7, 0.8])
    curve = tuning_curve(scores, "accuracy")
    assert curve["expected_max"].iloc[0] == pytest.approx(scores.mean())
    # E[max of 4 draws]: sum over the sorted values of x_i * ((i/4)^4 - ((i-1)/4)^4)
    by_hand = sum(x * ((i / 4) ** 4 - ((i - 1) / 4) ** 4) for i, x in enumerate(sorted(scores), 1))
    assert curve["expected_max"].iloc[-1] == pytest.approx(by_hand)
    assert tuning_curve(scores, "bleu")["low"].isna().all()  # unknown range: no band


def test_prediction_statistics_hand_computed():
    predicted, realised = np.array([3.0, 2.0, 1.0]), np.array([0.1, 0.3, 0.2])
    assert spearman(predicted, realised) == pytest.approx(-0.5)  # ranks (3,2,1) vs (1,3,2)
    # gains = realised - 0.1 = (0, 0.2, 0.1); ranked by prediction: 0, 0.2, 0.1
    dcg = 0 / math.log2(2) + 0.2 / math.log2(3) + 0.1 / math.log2(4)
    ideal = 0.2 / math.log2(2) + 0.1 / math.log2(3)
    assert ndcg(predicted, realised) == pytest.approx(dcg / ideal)
    assert regret_at(1, predicted, realised) == pytest.approx((0.3 - 0.1) / 0.3)
    assert regret_at(3, predicted, realised) == 0.0
    assert regret_at(1, realised, realised) == 0.0 and ndcg(realised, realised) == pytest.approx(1.0)
    assert top_pick(predicted, realised) == (0, 1, pytest.approx(0.2))
    # No intermediate stage (Δ = 0) is best: Regret@1 is undefined, the pick's shortfall is not.
    no_stage_best = np.array([-0.1, 0.0, -0.2])
    assert regret_at(1, predicted, no_stage_best) is None
    assert top_pick(predicted, no_stage_best) == (0, 1, pytest.approx(0.1))


@pytest.fixture
def matrix_sweep(tmp_path: Path) -> Path:
    """3 intermediates x 2 targets (accuracy, MCC), realfake with 2 intermediate seeds, and a
    transfer_estimates.csv whose LogME ranks the rte arms exactly as realised, HScore backwards."""
    root = tmp_path / "sweep"
    for target in ("rte", "cola"):
        cfg = {"target": {"name": target}}
        for n, ((seed, lr), v) in enumerate(zip(CELLS, VANILLA_SCORES)):
            m = write_trial(root / target / "none" / str(n), "none", seed, lr, v, config=cfg)
            for name in ("realfake", "hellaswag", "swag"):
                for iseed in ((1, 2) if name == "realfake" else (42,)):
                    m = write_trial(root / target / name / str(iseed) / str(n), name, seed, lr,
                                    round(v + SHIFTS[name, target], 4),
                                    config={**cfg, "intermediate": {"seed": iseed}})
        _retarget(root / target, target)
    rows = [("none", "", "rte", "LogME", 0.0, 1.5), ("realfake", 1, "rte", "LogME", 2.0, 2.0),
            ("realfake", 2, "rte", "LogME", 4.0, 2.0), ("hellaswag", 42, "rte", "LogME", 1.0, 2.0),
            ("swag", 42, "rte", "LogME", -1.0, 2.0)]
    rows += [(i, s, t, "HScore", -x, c) for i, s, t, _, x, c in rows]
    pd.DataFrame(rows, columns=["intermediate", "intermediate_seed", "target", "estimator", "score",
                                "seconds"]).to_csv(root / "transfer_estimates.csv", index=False)
    return root


def _retarget(folder: Path, target: str) -> None:
    # write_trial writes an rte trial; these are the same trials on another target and metric.
    import json
    for path in folder.rglob("metrics.json"):
        m = json.loads(path.read_text())
        m.update(target=target, metric_name=METRIC[target])
        path.write_text(json.dumps(m))


def test_report_curves_matrix_and_estimates(matrix_sweep, tmp_path):
    written = write_report([matrix_sweep], tmp_path / "out")
    for name in ("transfer_matrix.csv", "transfer_matrix.png", "curves_rte.png", "curves_cola.png",
                 "predicted_rte.png"):
        assert name in written, name
    cells = pd.read_csv(tmp_path / "out" / "transfer_matrix.csv")
    assert len(cells) == 6  # 3 intermediate arms x 2 targets: realfake's 2 seeds pooled into one arm
    for r in cells.itertuples():
        assert r.delta_mean == pytest.approx(SHIFTS[r.intermediate, r.target])
        assert r.delta_mean_significant == (SHIFTS[r.intermediate, r.target] != 0)
    assert set(cells["column"]) == {"rte (accuracy)", "cola (mcc)"}
    assert set(cells.loc[cells["intermediate"] == "realfake", "intermediate_seeds"]) == {2}

    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results.loc[results["intermediate"] == "realfake", "intermediate_seed"]) == {1, 2}

    summary = (tmp_path / "out" / "summary.md").read_text()
    curves = summary.split("## Tuning curves")[1].split("## Transfer matrix")[0]
    rte = curves.split("### rte")[1].split("###")[0]
    vanilla_row = next(line for line in rte.splitlines() if line.startswith("| vanilla |"))
    # n = 1 is the mean (0.63); every arm is shown at n = 4, vanilla's count (realfake pools 8)
    assert "| 4 | 0.6300 [" in vanilla_row and "n=4 (equal budget)" in rte
    estimates = summary.split("## Transferability estimates")[1]
    logme = next(line for line in estimates.splitlines() if line.startswith("| rte | LogME |"))
    hscore = next(line for line in estimates.splitlines() if line.startswith("| rte | HScore |"))
    # LogME ranks the 4 candidates (vanilla 0, realfake +0.1, hellaswag 0, swag -0.1) with ties
    # apart: rho 0.9487, NDCG 1, no regret; HScore the reverse: rho -0.9487, Regret@1 = 2.
    # then its exact p, its interval and P(pick = best), NDCG 1, no regret
    assert logme.startswith("| rte | LogME | 4 | 0.9487 |")
    assert "| 1.0000 | 0.0000 | 0.0000 | realfake (+0.1000) | realfake (+0.1000) | 0.0000 | 9.5 |" in logme
    assert "| 4 | -0.9487 |" in hscore and "| 2.0000 |" in hscore
    assert "| swag (-0.1000) | realfake (+0.1000) | 0.2000 |" in hscore
    picks = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("estimator")
    assert picks.at["HScore", "picked"] == "swag" and picks.at["HScore", "shortfall"] == pytest.approx(0.2)


def test_trials_cost_is_the_target_stage_as_the_estimate_command_counts_it(matrix_sweep, tmp_path):
    """`trials s` sums each trial's fit_seconds (the whole target stage) where metrics.json has it,
    else its train_seconds: the cost `python -m stilts_lab.transfer estimate` prints beside its own."""
    import json
    paths = sorted((matrix_sweep / "rte").rglob("metrics.json"))
    for path in paths[1:]:  # the first keeps train_seconds only (1.0), as older metrics.json files do
        m = json.loads(path.read_text())
        path.write_text(json.dumps({**m, "fit_seconds": 3.0}))
    write_report([matrix_sweep], tmp_path / "out")
    assert "fit_seconds" in pd.read_csv(tmp_path / "out" / "results.csv").columns
    estimates = (tmp_path / "out" / "summary.md").read_text().split("## Transferability estimates")[1]
    logme = next(line for line in estimates.splitlines() if line.startswith("| rte | LogME |"))
    assert logme.rstrip(" |").endswith(f"| {3.0 * (len(paths) - 1) + 1.0:.1f}")


def test_contrasts_pair_two_intermediate_arms_cell_by_cell(matrix_sweep, tmp_path):
    """--contrast A:B: A minus B per target over the cells both filled; against vanilla it gives the
    transfer matrix's own figures, interval included."""
    out = tmp_path / "out"
    written = write_report([matrix_sweep], out, contrasts=["realfake:hellaswag", "swag:vanilla"])
    assert "contrasts.csv" in written
    table = pd.read_csv(out / "contrasts.csv")
    assert len(table) == 4  # 2 contrasts x 2 targets
    for r in table.itertuples():
        b_shift = 0.0 if r.b == "none" else SHIFTS[r.b, r.target]
        assert r.delta_mean == pytest.approx(SHIFTS[r.a, r.target] - b_shift)
        assert r.cells == 4  # realfake's 2 seeds fill the same 4 cells: 4 cells, not 8
    cells = pd.read_csv(out / "transfer_matrix.csv").set_index(["intermediate", "target"])
    for r in table[table["b"] == "none"].itertuples():
        for column in ("delta_mean", "delta_mean_low", "delta_mean_high", "delta_max_low"):
            assert getattr(r, column) == pytest.approx(cells.at[("swag", r.target), column], nan_ok=True)
    section = (out / "summary.md").read_text().split("## Contrasts between intermediate arms")[1]
    row = next(line for line in section.splitlines() if line.startswith("| cola | realfake | hellaswag |"))
    assert "| -0.5000 [" in row and "| 4 |" in row


@pytest.mark.parametrize("spec, message", [
    ("realfak:hellaswag", r"--contrast realfak:hellaswag: no trials of 'realfak' in these sweeps \(intermediates found: hellaswag, none, realfake, swag\)"),
    ("realfake", r"expected two intermediate names as A:B"),
    ("swag:swag", r"an arm against itself"),
])
def test_a_bad_contrast_is_one_error_before_anything_is_written(matrix_sweep, tmp_path, capsys, spec, message):
    from stilts_lab.report import main
    assert main([str(matrix_sweep), "--out", str(tmp_path / "out"), "--contrast", spec]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out" / "results.csv").exists()


def test_search_savings_hand_computed():
    """Three candidates, the best (index 1) costs 4 s, the others 2 s each."""
    from stilts_lab.report.search import (random_search_seconds, resampled_savings, saved_seconds, search_seconds,
                                          trainings_to_best)
    realised, costs = np.array([0.0, 0.3, 0.1]), np.array([2.0, 4.0, 2.0])
    right, wrong = np.array([0.5, 0.9, 0.1]), np.array([0.9, 0.1, 0.5])
    assert trainings_to_best(right, realised) == 1 and trainings_to_best(wrong, realised) == 3
    assert search_seconds(right, realised, costs) == 4.0 and search_seconds(wrong, realised, costs) == 8.0
    assert random_search_seconds(realised, costs) == 4.0 + (2.0 + 2.0) / 2   # each other comes first half the time
    assert saved_seconds(right, realised, costs, 0.5) == pytest.approx(6.0 - 4.0 - 0.5)
    assert saved_seconds(wrong, realised, costs, 0.5) == pytest.approx(6.0 - 8.0 - 0.5)
    # Cells in which candidate 1 is always best: every resample saves the same 1.5 s.
    cells = np.array([[0.0, 0.3, 0.1], [0.0, 0.4, 0.2], [0.0, 0.2, 0.1]])
    assert resampled_savings(right, cells, costs, 0.5) == (pytest.approx(1.5), pytest.approx(1.5), 1.0)
    # Cells that disagree on the best: the interval spans a loss and a saving.
    cells = np.array([[0.0, 0.5, 0.1], [0.0, 0.0, 0.6]])
    low, high, p_saves = resampled_savings(right, cells, costs, 0.5)
    assert low < 0 < high and 0 < p_saves < 1


def test_report_says_what_each_ranking_saves(matrix_sweep, tmp_path):
    write_report([matrix_sweep], tmp_path / "out")
    search = pd.read_csv(tmp_path / "out" / "search.csv").set_index(["target", "estimator"])
    # rte: vanilla, hellaswag and swag cost 4 trials x 1 s, realfake (2 seeds) 8; the estimates cost 9.5 s.
    # LogME picks realfake, the best: 8 s against random's 8 + (4 + 4 + 4) / 2 = 14 s.
    logme, hscore = search.loc[("rte", "LogME")], search.loc[("rte", "HScore")]
    assert (logme["trainings_to_best"], logme["random_trainings"]) == (1, 2.5)
    assert logme["saved_seconds"] == pytest.approx(14 - 8 - 9.5)
    # HScore ranks it last: all four trained, 20 s.
    assert hscore["trainings_to_best"] == 4 and hscore["saved_seconds"] == pytest.approx(14 - 20 - 9.5)
    section = (tmp_path / "out" / "summary.md").read_text().split("## What each ranking would have saved")[1]
    assert "| rte | LogME (most) | 4 | 1 (2.5) | 8 (14) | 9.5 | -4 |" in section


def test_keyed_estimates_and_rankers_that_key_nothing_are_both_scored():
    """LogME keys each arm's checkpoint; `transfer rank`'s TextEmb rows key none and match by name. An arm
    whose trials recorded their checkpoint keys gets both: the keyed rows never hide the unkeyed ones."""
    from stilts_lab.report.predict import candidates
    comparisons = pd.DataFrame([dict(model="m", target="rte", intermediate=i, settings="", delta_mean=d, no_delta="")
                                for i, d in (("cola", 0.02), ("mrpc", -0.01))])
    links = pd.DataFrame([dict(model="m", target="rte", intermediate=i, settings="", checkpoint_key=k)
                          for i, k in (("cola", "k1"), ("mrpc", "k2"))])
    estimates = pd.DataFrame(
        [dict(intermediate=i, intermediate_seed=42, target="rte", estimator="LogME", score=v, seconds=1.0, model="m",
              checkpoint_key=k) for i, k, v in (("cola", "k1", 0.9), ("mrpc", "k2", 0.1), ("cola", "stale", -5.0))]
        + [dict(intermediate=i, intermediate_seed=None, target="rte", estimator="TextEmb", score=v, seconds=2.0,
                model="m", checkpoint_key=None) for i, v in (("cola", 0.3), ("mrpc", 0.7))])
    points = candidates(comparisons, estimates, links).set_index(["estimator", "intermediate"])["score"]
    assert points[("LogME", "cola")] == 0.9      # its own checkpoint's row, not the stale key's
    assert points[("TextEmb", "cola")] == 0.3 and points[("TextEmb", "mrpc")] == 0.7
