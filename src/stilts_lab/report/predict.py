"""Transferability estimates against realised gains: SWEEP_DIR/transfer_estimates.csv (written by
`python -m stilts_lab.transfer estimate`) scored against the report's Δ mean per target.

The CSV has one row per (starting point, target, estimator):
    intermediate       the arm's intermediate task name, e.g. "realfake"; "none" for the plain encoder
    intermediate_seed  the intermediate checkpoint's seed (int), empty for "none"
    target             the target task name, as in metrics.json
    estimator          e.g. "LogME", "HScore"; higher means "predicted to transfer better"
    score              the estimate
    seconds            what computing it cost (encoding plus scoring)

An arm pooling several intermediate seeds is predicted by the mean of its seeds' scores. The
candidates of a target are its intermediate arms (realised Δ mean against vanilla) and, when the
CSV scores "none", vanilla itself (Δ = 0 by definition: choosing no intermediate stage).

Per (target, estimator):
- Spearman's rho between score and realised Δ mean (scipy.stats.spearmanr);
- NDCG over the whole ranking (sklearn.metrics.ndcg_score), the gain of a candidate being its
  realised Δ mean minus the smallest realised Δ mean among the target's candidates, so the worst
  candidate gains 0 and every gain is non-negative, as Schulte et al. 2024 take the realised
  performance as the relevance; discount 1/log2(rank + 1);
- Regret@k for k = 1, 3: (best realised Δ - best realised Δ among the k highest scored) /
  |best realised Δ|; 0 when the estimator's top k hold the best candidate;
- the pick itself: the top-scored candidate against the realised best, and the shortfall, best Δ
  minus the pick's Δ in the metric's units. It answers "would the estimator have picked the best
  arm?" where Regret@k cannot: when no intermediate stage (Δ = 0) is best.
Each is None (n/a) where undefined: fewer than 2 candidates, no spread, a best Δ of 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import ndcg_score

from stilts_lab.errors import StiltsError
from stilts_lab.report.arms import VANILLA, arm_label

ESTIMATES_FILE = "transfer_estimates.csv"
PREDICTIONS_FILE = "predictions.csv"   # the report's scores of the estimates, one row per (target, estimator)
COLUMNS = ["intermediate", "intermediate_seed", "target", "estimator", "score", "seconds"]
REGRET_KS = (1, 3)


def read_estimates(dirs: Sequence[Path]) -> pd.DataFrame | None:
    """Every DIR/transfer_estimates.csv of the report's folders, concatenated; None if none."""
    frames = []
    for d in dirs:
        path = Path(d) / ESTIMATES_FILE
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise StiltsError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
        bad = frame.index[pd.to_numeric(frame["score"], errors="coerce").isna()]
        if len(bad):
            raise StiltsError(f"{path}:{bad[0] + 2}: score is not a number: {frame.at[bad[0], 'score']!r}")
        frames.append(frame[COLUMNS].astype({"score": float, "intermediate": str, "target": str}))
    return pd.concat(frames, ignore_index=True) if frames else None


def spearman(predicted: np.ndarray, realised: np.ndarray) -> float | None:
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(realised) == 0:
        return None
    return float(stats.spearmanr(predicted, realised).statistic)


def ndcg(predicted: np.ndarray, realised: np.ndarray) -> float | None:
    gains = np.asarray(realised, float) - np.min(realised)
    if len(gains) < 2 or not gains.any():
        return None
    return float(ndcg_score(gains[None, :], np.asarray(predicted, float)[None, :]))


def regret_at(k: int, predicted: np.ndarray, realised: np.ndarray) -> float | None:
    realised = np.asarray(realised, float)
    best = realised.max()
    if len(realised) < 2 or best == 0:
        return None
    # stable order: among tied scores, the candidate listed first is picked first
    top = np.argsort(-np.asarray(predicted, float), kind="stable")[:k]
    return float((best - realised[top].max()) / abs(best))


def top_pick(predicted: np.ndarray, realised: np.ndarray) -> tuple[int, int, float]:
    """(index of the top-scored candidate, index of the realised best, best Δ - the pick's Δ);
    ties go to the candidate listed first, as in regret_at."""
    realised = np.asarray(realised, float)
    pick = int(np.argsort(-np.asarray(predicted, float), kind="stable")[0])
    best = int(np.argmax(realised))
    return pick, best, float(realised[best] - realised[pick])


def candidates(comparisons: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, target, estimator, candidate arm) with its `score`, realised
    `delta_mean` and `seconds` (the estimate's cost, summed over the arm's seeds)."""
    est = estimates.groupby(["target", "estimator", "intermediate"], as_index=False).agg(
        score=("score", "mean"), seconds=("seconds", "sum"), seeds=("score", "size"))
    rows = []
    for (model, target), comp in comparisons.groupby(["model", "target"], sort=True):
        realised = comp[comp["no_delta"] == ""][["intermediate", "settings", "delta_mean"]]
        if (est["intermediate"] == VANILLA).any():
            realised = pd.concat([pd.DataFrame([dict(intermediate=VANILLA, settings="", delta_mean=0.0)]),
                                  realised], ignore_index=True)
        joined = realised.merge(est[est["target"] == target], on="intermediate")
        joined.insert(0, "model", model)
        rows.append(joined)
    columns = ["model", "target", "estimator", "intermediate", "settings", "score", "delta_mean", "seconds"]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


def trial_seconds(trials: pd.DataFrame) -> dict:
    """{(model, target): what its trials' target stages cost}: fit_seconds (the whole stage) where
    metrics.json records it, else train_seconds (the timed epochs), as `python -m stilts_lab.transfer
    estimate` counts them, so the report and the estimate command print the same cost."""
    fit = trials["fit_seconds"] if "fit_seconds" in trials else pd.Series(float("nan"), index=trials.index)
    cost = pd.to_numeric(fit, errors="coerce").fillna(pd.to_numeric(trials["train_seconds"], errors="coerce"))
    return cost.fillna(0.0).groupby([trials["model"], trials["target"]]).sum().to_dict()


def prediction_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per (model, target, estimator): candidates, Spearman, NDCG, Regret@1, Regret@3, the pick
    (picked, picked_delta, best, best_delta, shortfall), seconds."""
    rows = []
    for (model, target, estimator), group in points.groupby(["model", "target", "estimator"], sort=True):
        p, r = group["score"].to_numpy(float), group["delta_mean"].to_numpy(float)
        pick, best, shortfall = top_pick(p, r)
        names = [arm_label(i, s) for i, s in zip(group["intermediate"], group["settings"])]
        rows.append(dict(model=model, target=target, estimator=estimator, candidates=len(group),
                         spearman=spearman(p, r), ndcg=ndcg(p, r),
                         **{f"regret_at_{k}": regret_at(k, p, r) for k in REGRET_KS},
                         picked=names[pick], picked_delta=r[pick], best=names[best], best_delta=r[best],
                         shortfall=shortfall, seconds=float(group["seconds"].sum())))
    return pd.DataFrame(rows)
