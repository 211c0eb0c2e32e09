"""What a ranking would have saved: the training a user spends to find a target's best starting point
by training the candidates in the ranker's order, against training them in a random order.

A user with a ranking trains its candidates one by one, best-scored first, and has found the best one
once it is trained. With the realised Δ means as the truth (the same ones predict.py scores against):
- trainings to best: k, the realised best's position in the ranker's order (1 = its pick is the best);
  a random order needs (n + 1) / 2 on average;
- search seconds: the summed cost of the k candidates trained, each candidate's cost being what its
  trials' target stages took (predict.trial_cost: fit_seconds, else train_seconds); a random order's
  expected cost is the best's cost plus half the others' (each other candidate comes first with
  probability 1/2);
- saved seconds: the random order's expected cost minus the ranker's, minus what the ranker itself
  cost. Negative: the ranking cost more than not ranking.
The intermediate stage's own training is not counted (the report reads trials, not checkpoints), so
the savings are a floor for candidates whose intermediate stage must be trained too.

The realised best is itself uncertain: resampling the grid cells (as predict.resampled does, every
candidate with the same cells) gives a 95% percentile interval of the saving and the share of
resamples in which the ranker saves anything.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stilts_lab.report.predict import candidate_cells, ranked, resampled_means, trial_cost

SEARCH_FILE = "search.csv"   # the report's search_table, one row per (target, ranker)


def trainings_to_best(predicted: np.ndarray, realised: np.ndarray) -> int:
    return int(np.flatnonzero(ranked(predicted) == int(np.argmax(realised)))[0]) + 1


def search_seconds(predicted: np.ndarray, realised: np.ndarray, costs: np.ndarray) -> float:
    return float(np.asarray(costs, float)[ranked(predicted)[:trainings_to_best(predicted, realised)]].sum())


def random_search_seconds(realised: np.ndarray, costs: np.ndarray) -> float:
    costs = np.asarray(costs, float)
    best = int(np.argmax(realised))
    return float(costs[best] + (costs.sum() - costs[best]) / 2)


def saved_seconds(predicted: np.ndarray, realised: np.ndarray, costs: np.ndarray, ranker_seconds: float) -> float:
    return random_search_seconds(realised, costs) - search_seconds(predicted, realised, costs) - ranker_seconds


def resampled_savings(predicted: np.ndarray, cells: np.ndarray, costs: np.ndarray,
                      ranker_seconds: float) -> tuple[float | None, float | None, float | None]:
    """(95% interval low, high of the saving, P(saving > 0)) over resamples of the cells: `cells` is
    (C, candidates), each column a candidate's per-cell Δ."""
    if cells.shape[0] < 2:
        return None, None, None
    draws = resampled_means(cells)
    saved = np.array([saved_seconds(predicted, d, costs, ranker_seconds) for d in draws])
    low, high = np.percentile(saved, [2.5, 97.5])
    return float(low), float(high), float((saved > 0).mean())


def arm_seconds(trials: pd.DataFrame) -> dict:
    """{(model, target, intermediate, settings): the summed cost of that arm's target stages}."""
    keys = [trials[c].astype(str) for c in ("model", "target", "intermediate", "settings")]
    return trial_cost(trials).groupby(keys).sum().to_dict()


def search_table(points: pd.DataFrame, costs: dict, cells: dict | None = None) -> pd.DataFrame:
    """Per (model, target, estimator): trainings to the best against a random order's, both searches'
    seconds, the ranker's own seconds, the saving with its resampled interval and P(saving > 0).
    `points`: predict.candidates(); `costs`: arm_seconds(); `cells`: predict.realised_cells()."""
    rows = []
    for (model, target, estimator), group in points.groupby(["model", "target", "estimator"], sort=True):
        p, r = group["score"].to_numpy(float), group["delta_mean"].to_numpy(float)
        c = np.array([costs.get((model, target, i, s), np.nan) for i, s in zip(group["intermediate"], group["settings"])])
        if len(group) < 2 or np.isnan(c).any():
            continue
        ranker = float(group["seconds"].sum())
        low = high = p_saves = None
        per_cell = (cells or {}).get((model, target))
        if per_cell is not None:
            low, high, p_saves = resampled_savings(p, candidate_cells(group, per_cell), c, ranker)
        rows.append(dict(model=model, target=target, estimator=estimator, candidates=len(group),
                         trainings_to_best=trainings_to_best(p, r), random_trainings=(len(group) + 1) / 2,
                         search_seconds=search_seconds(p, r, c), random_seconds=random_search_seconds(r, c),
                         ranker_seconds=ranker, saved_seconds=saved_seconds(p, r, c, ranker),
                         saved_low=low, saved_high=high, p_saves=p_saves))
    return pd.DataFrame(rows)
