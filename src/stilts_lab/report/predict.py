"""Transferability estimates against realised gains: SWEEP_DIR/transfer_estimates.csv (written by
`python -m stilts_lab.transfer estimate`) scored against the report's Δ mean per target.

The CSV has one row per (starting point, target, estimator):
    intermediate       the arm's intermediate task name, e.g. "realfake"; "none" for the plain encoder
    intermediate_seed  the intermediate checkpoint's seed (int), empty for "none"
    target             the target task name, as in metrics.json
    estimator          e.g. "LogME", "HScore"; higher means "predicted to transfer better"
    score              the estimate
    seconds            what computing it cost (encoding plus scoring)
and, written since the estimates were keyed by checkpoint (older CSVs lack them):
    model              the model name, as in metrics.json
    checkpoint_key     the intermediate checkpoint's key (metrics.json's intermediate_checkpoint.key,
                       the name of its cache folder); empty for "none"

An arm is predicted by the mean over exactly its own checkpoints: the keys its scored trials
recorded in metrics.json, matched with the CSV's rows of the same model, so two ablation arms of
one intermediate task (another intermediate.train_size) get their own scores and two models never
share one. Where either side lacks keys (an older CSV; a report folder holding only results.csv),
an arm is predicted, as before, by the mean of the rows of its intermediate's name (of its model,
where the CSV records one): an arm pooling several intermediate seeds by the mean of its seeds'
scores. The candidates of a target are its intermediate arms (realised Δ mean against vanilla)
and, when the CSV scores "none", vanilla itself (Δ = 0 by definition: choosing no intermediate stage).

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

With their uncertainty (STATS.md "Scoring a ranking"): Spearman's exact permutation p (every
ordering of up to 8 candidates; with 6, |rho| = 0.77 has p = 0.10), and from resampling the
grid cells (the realised Δs are means over cells, paired by cell across arms, so every arm is
resampled with the same cells): the 95% percentile interval of rho and P(pick = best), the share
of resamples in which the estimator's pick is the realised best.
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
ESTIMATES_GLOB = "transfer_estimates*.csv"   # the estimates, and rankers' files beside them
PREDICTIONS_FILE = "predictions.csv"   # the report's scores of the estimates, one row per (target, estimator)
COLUMNS = ["intermediate", "intermediate_seed", "target", "estimator", "score", "seconds"]
KEYS = ["model", "checkpoint_key"]   # optional: older CSVs lack them (None in the frame read_estimates returns)
ARM_CHECKPOINTS = "arm_checkpoints"  # estimates.attrs: which checkpoint keys each arm's trials started from
REGRET_KS = (1, 3)
RESAMPLES = 2_000
RESAMPLE_SEED = 0


def _text_or_none(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or str(value) == "" else str(value)


def read_estimates(dirs: Sequence[Path]) -> pd.DataFrame | None:
    """Every DIR/transfer_estimates*.csv of the report's folders, concatenated (the checkpoint-based
    estimates, and e.g. `transfer rank --out DIR/transfer_estimates_rank_rte.csv`); None if none. Columns:
    COLUMNS and KEYS (None where a CSV lacks them). Where some row has a checkpoint key, attrs
    [ARM_CHECKPOINTS] holds arm_checkpoints(dirs), for candidates() to join them by."""
    frames = []
    for path in (p for d in dirs for p in sorted(Path(d).glob(ESTIMATES_GLOB)) if p.is_file()):
        frame = pd.read_csv(path, dtype={c: str for c in KEYS})  # a key may look like a number ("1234e5678901")
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise StiltsError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
        bad = frame.index[pd.to_numeric(frame["score"], errors="coerce").isna()]
        if len(bad):
            raise StiltsError(f"{path}:{bad[0] + 2}: score is not a number: {frame.at[bad[0], 'score']!r}")
        frame = frame.reindex(columns=COLUMNS + KEYS)
        for column in KEYS:
            frame[column] = frame[column].map(_text_or_none).astype(object)
        frames.append(frame.astype({"score": float, "intermediate": str, "target": str}))
    if not frames:
        return None
    out = pd.concat(frames, ignore_index=True)
    if out["checkpoint_key"].notna().any():
        out.attrs[ARM_CHECKPOINTS] = arm_checkpoints(dirs)
    return out


def arm_checkpoints(dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per (model, target, intermediate, settings, checkpoint_key): the intermediate
    checkpoints the scored trials of each arm started from (metrics.json's intermediate_checkpoint.key),
    the arms as the report forms them from the same folders. Empty for a folder holding only
    results.csv, which does not record the keys."""
    from stilts_lab.report.collect import collect_trials
    from stilts_lab.results import METRICS_FILE, read_metrics

    columns = ["model", "target", "intermediate", "settings", "checkpoint_key"]
    df = collect_trials(dirs)
    rows = []
    if not df.empty:
        for i in df.index[df["scored"] & (df["intermediate"] != VANILLA)]:
            path = Path(str(df.at[i, "path"]))
            if path.name != METRICS_FILE or not path.is_file():
                continue
            metrics = read_metrics(path)
            checkpoint = metrics.get("intermediate_checkpoint") if isinstance(metrics, dict) else None
            key = _text_or_none((checkpoint or {}).get("key"))
            if key is not None:
                rows.append([str(df.at[i, c]) for c in columns[:4]] + [key])
    return pd.DataFrame(rows, columns=columns).drop_duplicates(ignore_index=True)


def spearman(predicted: np.ndarray, realised: np.ndarray) -> float | None:
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(realised) == 0:
        return None
    return float(stats.spearmanr(predicted, realised).statistic)


def spearman_p(predicted: np.ndarray, realised: np.ndarray) -> float | None:
    """Two-sided permutation p of Spearman's rho: exact over every ordering up to 8 candidates."""
    if spearman(predicted, realised) is None:
        return None
    exact = len(predicted) <= 8
    result = stats.permutation_test(
        (np.asarray(predicted, float),), lambda x: stats.spearmanr(x, realised).statistic,
        permutation_type="pairings", n_resamples=np.inf if exact else 9_999, alternative="two-sided",
        rng=np.random.default_rng(RESAMPLE_SEED))
    return float(result.pvalue)


def realised_cells(df: pd.DataFrame) -> dict:
    """{(model, target): DataFrame of per-cell Δ (cells x (intermediate, settings))}: each arm's
    mean over its checkpoints in a cell minus vanilla's in that cell, over the cells every arm of
    the target filled (vanilla's column is 0)."""
    from stilts_lab.report.collect import SCORE, sections
    out = {}
    for model, target, section in sections(df):
        scored = section[section["scored"]]
        means = scored.groupby(["intermediate", "settings", "vanilla_arm", "arm", "cell"])[SCORE].mean()
        vanilla = {key: group.droplevel([0, 1, 2, 3]) for key, group in means.groupby(level="arm")
                   if key in set(scored["vanilla_arm"])}
        columns = {}
        for (name, settings, vkey, key), group in means.groupby(level=[0, 1, 2, 3]):
            if vkey in vanilla:
                columns[(name, settings)] = group.droplevel([0, 1, 2, 3]) - vanilla[vkey]
        if columns:
            out[(model, target)] = pd.DataFrame(columns).dropna()
    return out


def ranked(predicted: np.ndarray) -> np.ndarray:
    """Candidate indices best-scored first; among tied scores, the candidate listed first comes first."""
    return np.argsort(-np.asarray(predicted, float), kind="stable")


def candidate_cells(group: pd.DataFrame, per_cell: pd.DataFrame) -> np.ndarray:
    """(C, candidates): each candidate's per-cell Δ (realised_cells' columns; vanilla's are 0), in the
    order of `group`'s rows (one per candidate: intermediate, settings)."""
    return np.column_stack([np.zeros(len(per_cell)) if i == VANILLA else per_cell[(i, s)].to_numpy(float)
                            for i, s in zip(group["intermediate"], group["settings"])])


def resampled_means(cells: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """(RESAMPLES, candidates): each candidate's mean Δ over a resample of the cells (the rows of
    `cells`, (C, candidates)), every candidate with the same cells: the pairing by cell is kept."""
    rng = np.random.default_rng(RESAMPLE_SEED) if rng is None else rng
    return cells[rng.integers(0, cells.shape[0], (RESAMPLES, cells.shape[0]))].mean(axis=1)


def resampled(predicted: np.ndarray, cells: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """(rho's 95% interval low, high, P(pick = best)) over resamples of the cells: `cells` is
    (C, candidates), each column a candidate's per-cell Δ."""
    if cells.shape[0] < 2:
        return None, None, None
    draws = resampled_means(cells)   # (R, candidates)
    pick = int(ranked(predicted)[0])
    p_best = float((draws.argmax(axis=1) == pick).mean())
    rhos = np.array([spearman(predicted, d) for d in draws], dtype=float)
    rhos = rhos[np.isfinite(rhos)]
    if not len(rhos):
        return None, None, p_best
    low, high = np.percentile(rhos, [2.5, 97.5])
    return float(low), float(high), p_best


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
    top = ranked(predicted)[:k]
    return float((best - realised[top].max()) / abs(best))


def top_pick(predicted: np.ndarray, realised: np.ndarray) -> tuple[int, int, float]:
    """(index of the top-scored candidate, index of the realised best, best Δ - the pick's Δ);
    ties go to the candidate listed first, as in regret_at."""
    realised = np.asarray(realised, float)
    pick = int(ranked(predicted)[0])
    best = int(np.argmax(realised))
    return pick, best, float(realised[best] - realised[pick])


def candidates(comparisons: pd.DataFrame, estimates: pd.DataFrame, links: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, target, estimator, candidate arm) with its `score`, realised
    `delta_mean` and `seconds` (the estimate's cost, summed over the rows that score it). `links`:
    arm_checkpoints(), by default the one read_estimates() left in estimates.attrs. An arm whose
    trials recorded checkpoint keys is scored by the rows of those keys (its model's), the mean over
    its checkpoints; else by the rows of its intermediate's name, of its model where a row says."""
    estimates = estimates.reindex(columns=list(dict.fromkeys(list(estimates.columns) + KEYS)))
    if links is None:
        links = estimates.attrs.get(ARM_CHECKPOINTS)
    own_keys: dict = {}
    if links is not None:
        for r in links.itertuples(index=False):
            own_keys.setdefault((r.model, r.target, r.intermediate, r.settings), set()).add(r.checkpoint_key)
    estimators = sorted(estimates["estimator"].unique())
    has_vanilla = bool((estimates["intermediate"] == VANILLA).any())
    rows = []
    for (model, target), comp in comparisons.groupby(["model", "target"], sort=True):
        realised = comp[comp["no_delta"] == ""][["intermediate", "settings", "delta_mean"]]
        if has_vanilla:
            realised = pd.concat([pd.DataFrame([dict(intermediate=VANILLA, settings="", delta_mean=0.0)]),
                                  realised], ignore_index=True)
        mine = estimates[(estimates["target"] == target)
                         & (estimates["model"].isna() | (estimates["model"] == model))]
        for arm in realised.itertuples(index=False):
            keys = own_keys.get((model, target, arm.intermediate, arm.settings))
            by_key = mine[mine["checkpoint_key"].isin(keys)] if keys else mine.iloc[:0]
            named = mine[mine["intermediate"] == arm.intermediate]
            if keys:             # the rows that key no checkpoint (e.g. `transfer rank`'s) still speak by name
                named = named[named["checkpoint_key"].isna()]
            for estimator in estimators:
                # exactly this arm's checkpoints where the estimator keyed them (a mean per checkpoint,
                # then over them); else by name: every row of that intermediate
                group = by_key[by_key["estimator"] == estimator]
                per_checkpoint = bool(len(group))
                if not per_checkpoint:
                    group = named[named["estimator"] == estimator]
                if not len(group):
                    continue
                score = (group.groupby("checkpoint_key")["score"].mean().mean() if per_checkpoint
                         else group["score"].mean())
                rows.append(dict(model=model, target=target, estimator=estimator, intermediate=arm.intermediate,
                                 settings=arm.settings, score=float(score), delta_mean=arm.delta_mean,
                                 seconds=float(group["seconds"].sum())))
    columns = ["model", "target", "estimator", "intermediate", "settings", "score", "delta_mean", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def trial_cost(trials: pd.DataFrame) -> pd.Series:
    """Each trial's target-stage cost: fit_seconds (the whole stage) where metrics.json records it,
    else train_seconds (the timed epochs), as `python -m stilts_lab.transfer estimate` counts them, so
    the report and the estimate command print the same cost; 0 where neither is known."""
    fit = trials["fit_seconds"] if "fit_seconds" in trials else pd.Series(float("nan"), index=trials.index)
    cost = pd.to_numeric(fit, errors="coerce").fillna(pd.to_numeric(trials["train_seconds"], errors="coerce"))
    return cost.fillna(0.0)


def trial_seconds(trials: pd.DataFrame) -> dict:
    """{(model, target): what its trials' target stages cost} (trial_cost, summed)."""
    return trial_cost(trials).groupby([trials["model"], trials["target"]]).sum().to_dict()


def prediction_table(points: pd.DataFrame, cells: dict | None = None) -> pd.DataFrame:
    """Per (model, target, estimator): candidates, Spearman with its exact p and resampled interval,
    NDCG, Regret@1, Regret@3, the pick (picked, picked_delta, best, best_delta, shortfall) and
    P(pick = best), seconds. `cells`: realised_cells(), for the resampling."""
    rows = []
    for (model, target, estimator), group in points.groupby(["model", "target", "estimator"], sort=True):
        p, r = group["score"].to_numpy(float), group["delta_mean"].to_numpy(float)
        pick, best, shortfall = top_pick(p, r)
        names = [arm_label(i, s) for i, s in zip(group["intermediate"], group["settings"])]
        per_cell = (cells or {}).get((model, target))
        low = high = p_best = None
        if per_cell is not None:
            low, high, p_best = resampled(p, candidate_cells(group, per_cell))
        rows.append(dict(model=model, target=target, estimator=estimator, candidates=len(group),
                         spearman=spearman(p, r), spearman_p=spearman_p(p, r), spearman_low=low,
                         spearman_high=high, p_pick_best=p_best, ndcg=ndcg(p, r),
                         **{f"regret_at_{k}": regret_at(k, p, r) for k in REGRET_KS},
                         picked=names[pick], picked_delta=r[pick], best=names[best], best_delta=r[best],
                         shortfall=shortfall, seconds=float(group["seconds"].sum())))
    return pd.DataFrame(rows)
