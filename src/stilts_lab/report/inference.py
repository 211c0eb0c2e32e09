"""Calibrated inference for one comparison of two arms (A minus B) over the grid cells both filled.

The data of a comparison is a paired layout: `a` of shape (..., C, KA), arm A's score in each of C
grid cells (target seed x rate x ...) from each of its KA intermediate checkpoints, and `b` of shape
(..., C, KB) for arm B (vanilla: KB = 1). Every function takes leading axes, so the simulation tests
run thousands of synthetic sweeps in one call (tests/test_calibration.py measures what these claim).

Two claims, named by what is resampled (../STATS.md "Units and pairing"):
- conditional ("these checkpoints"): the cells are the unit. Scores are fitted as cell + column
  (BlockDesign: a column is one checkpoint of one arm), so the large cell effects cancel, and the
  residual variance is pooled over every arm of the experiment; Δ's t test has the design's df.
- task-level ("the intermediate task"): the checkpoints are a sample too. Var(Δ) adds each arm's
  between-checkpoint variance of its column effects over K (whose expectation also holds
  sigma_e^2 / C: slightly conservative), df = K - 1. It needs 3+ checkpoints per arm that has any
  (with 2, its df would be 1; the percentile bootstrap over 2 seeds gave 9-19% false positives).

Maxima at equal budgets: each checkpoint's trials and vanilla's trials are C draws each, so the
expected best of n = C draws (Dodge et al. 2019) within each checkpoint, averaged over checkpoints,
compares like with like; pooling 2 checkpoints (2C trials) against vanilla's C would not. Its test
permutes the KA + KB scores within each cell (exact under "these checkpoints have no effect"), and
its interval inverts that test under a shift of A, so the interval and the test cannot disagree.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_TASK_CHECKPOINTS = 3
PERMUTATIONS = 2_000
PERMUTATION_SEED = 0


def _ms_checkpoint(x: np.ndarray) -> np.ndarray:
    """Between-checkpoint mean square of a (..., C, K) layout: C * var over k of the checkpoint means."""
    c = x.shape[-2]
    return c * x.mean(axis=-2).var(axis=-1, ddof=1)


class BlockDesign:
    """score = cell effect + column effect + noise, fitted by least squares; a column is one
    (arm, checkpoint), vanilla one column. Cells are the blocks: the paired design of a randomized
    complete block experiment, whose residual is pooled over every arm of the experiment (a target
    and its shared settings), so 6 cells still leave tens of residual df. Unbalanced layouts (a failed
    trial) fit as they are. One design serves any number of sweeps: fit() takes y of shape (..., n)."""

    def __init__(self, cells: Sequence, columns: Sequence):
        self.cell_index = {c: i for i, c in enumerate(dict.fromkeys(cells))}
        self.column_index = {c: i for i, c in enumerate(dict.fromkeys(columns))}
        n, m = len(cells), len(self.column_index)
        x = np.zeros((n, m + len(self.cell_index) - 1))
        x[np.arange(n), [self.column_index[c] for c in columns]] = 1.0
        for row, cell in enumerate(cells):             # the first cell is the reference level
            if (i := self.cell_index[cell]) > 0:
                x[row, m + i - 1] = 1.0
        self.x, self.pinv = x, np.linalg.pinv(x)
        self.df = n - np.linalg.matrix_rank(x)
        self.cov_unit = np.linalg.pinv(x.T @ x)

    def fit(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(column effects (..., M), residual variance (...)); NaN variance without residual df."""
        beta = np.asarray(y, float) @ self.pinv.T
        resid = y - beta @ self.x.T
        s2 = (resid ** 2).sum(-1) / self.df if self.df > 0 else np.full(resid.shape[:-1], np.nan)
        return beta[..., :len(self.column_index)], s2

    def cell_effects(self, y: np.ndarray) -> np.ndarray:
        """Each cell's effect, the first cell's fixed at 0 (what the pairing removes)."""
        beta = np.asarray(y, float) @ self.pinv.T
        return np.concatenate([np.zeros(beta.shape[:-1] + (1,)), beta[..., len(self.column_index):]], axis=-1)

    def contrast_variance(self, a_columns: Sequence, b_columns: Sequence) -> float:
        """Var(mean of A's column effects - mean of B's) per unit of residual variance."""
        w = np.zeros(self.x.shape[1])
        w[[self.column_index[c] for c in a_columns]] += 1 / len(a_columns)
        w[[self.column_index[c] for c in b_columns]] -= 1 / len(b_columns)
        return float(w @ self.cov_unit @ w)


def compare(design: BlockDesign, effects: np.ndarray, s2: np.ndarray, a_columns: Sequence, b_columns: Sequence,
            alpha: float = ALPHA, margin: float | None = None) -> dict:
    """Δ mean = A's mean column effect minus B's (paired by cell through the design), with its
    conditional test (residual variance, the design's df) and its task-level test (plus each arm's
    between-checkpoint variance of its column effects / K, df = K - 1: the smallest df of the terms,
    not Satterthwaite's estimate, which is itself random and at Holm's alpha / m lets the tail
    through: 11% family-wise error simulated at 5 checkpoints x 36 cells, 15 tests). NaN where a test
    is not defined (task level: fewer than 3 checkpoints in an arm that has any)."""
    ia = [design.column_index[c] for c in a_columns]
    ib = [design.column_index[c] for c in b_columns]
    delta = effects[..., ia].mean(-1) - effects[..., ib].mean(-1)
    var_cond = s2 * design.contrast_variance(a_columns, b_columns)
    out = {"delta": delta, "checkpoints_a": len(ia), "checkpoints_b": len(ib)}
    with np.errstate(divide="ignore", invalid="ignore"):
        _fill(out, "cond", delta, var_cond, np.full_like(delta, float(design.df)), alpha, margin)
        ready = all(k == 1 or k >= MIN_TASK_CHECKPOINTS for k in (len(ia), len(ib))) and max(len(ia), len(ib)) > 1
        if ready:
            var, dfs = var_cond, []
            for index in (ia, ib):
                if len(index) > 1:
                    var = var + effects[..., index].var(-1, ddof=1) / len(index)
                    dfs.append(len(index) - 1.0)
            _fill(out, "task", delta, var, np.full_like(delta, min(dfs)), alpha, margin)
        else:
            nan = np.full_like(delta, np.nan)
            _fill(out, "task", delta, nan, nan, alpha, margin)
    return out


def _fill(out: dict, scope: str, delta, var, df, alpha: float, margin: float | None) -> None:
    se = np.sqrt(var)
    t = delta / se
    # A zero spread (every cell the same difference) has no t: NaN, reported as n/a, never p = 0.
    p = np.where(se > 0, 2 * stats.t.sf(np.abs(t), df), np.nan)
    half = stats.t.ppf(1 - alpha / 2, df) * se
    out.update({f"{scope}_se": se, f"{scope}_df": df, f"{scope}_p": p,
                f"{scope}_low": delta - half, f"{scope}_high": delta + half})
    if margin is not None:
        lower = stats.t.sf((delta + margin) / se, df)       # H0: Δ <= -margin
        upper = stats.t.cdf((delta - margin) / se, df)      # H0: Δ >= +margin
        out[f"{scope}_tost_p"] = np.where(se > 0, np.maximum(lower, upper), np.nan)


def expected_max(x: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """E[best of n draws with replacement] from the values along `axis` (Dodge et al. 2019):
    sum_i v_(i) ((i/N)^n - ((i-1)/N)^n)."""
    v = np.sort(np.moveaxis(np.asarray(x, float), axis, -1), axis=-1)
    big_n = v.shape[-1]
    i = np.arange(1, big_n + 1)
    weights = (i / big_n) ** n - ((i - 1) / big_n) ** n
    return v @ weights


def equal_budget_max_delta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Δ max at equal budgets: each checkpoint's expected best of n = C trials (its C cells),
    averaged over checkpoints, A minus B. Shapes (..., C, K)."""
    c = a.shape[-2]
    return expected_max(a, c, axis=-2).mean(axis=-1) - expected_max(b, c, axis=-2).mean(axis=-1)


def _within_cell_permutations(k: int, cells: int, perms: int, rng: np.random.Generator) -> np.ndarray:
    """(perms, cells, k) indices: an independent random order of the k scores of each cell."""
    return np.argsort(rng.random((perms, cells, k)), axis=-1)


def permutation_test(a: np.ndarray, b: np.ndarray, statistic, perms: int = PERMUTATIONS,
                     seed: int = PERMUTATION_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(statistic(a, b), two-sided permutation p). Under "these checkpoints have no effect", the
    KA + KB scores of a cell are exchangeable, so shuffling them within each cell (the same shuffles
    for every comparison: a fixed seed keeps the report deterministic) gives the statistic's null
    distribution. p = (1 + #{as extreme}) / (1 + perms), doubled from the smaller tail.
    `statistic` maps (..., C, KA) and (..., C, KB) arrays to (...)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ka = a.shape[-1]
    pooled = np.concatenate([a, b], axis=-1)                    # (..., C, K)
    observed = statistic(a, b)
    order = _within_cell_permutations(pooled.shape[-1], pooled.shape[-2], perms, np.random.default_rng(seed))
    null = np.empty(pooled.shape[:-2] + (perms,))
    for start in range(0, perms, 250):                          # chunks bound the memory
        idx = order[start:start + 250]                          # (P, C, K)
        shuffled = np.take_along_axis(pooled[..., None, :, :], np.broadcast_to(
            idx, pooled.shape[:-2] + idx.shape), axis=-1)      # (..., P, C, K)
        null[..., start:start + 250] = statistic(shuffled[..., :ka], shuffled[..., ka:])
    eps = 1e-12 * np.maximum(1.0, np.abs(observed))[..., None]  # ties count as extreme
    upper = (1 + (null >= observed[..., None] - eps).sum(-1)) / (1 + perms)
    lower = (1 + (null <= observed[..., None] + eps).sum(-1)) / (1 + perms)
    return observed, np.minimum(1.0, 2 * np.minimum(upper, lower))


def permutation_max_test(a: np.ndarray, b: np.ndarray, perms: int = PERMUTATIONS,
                         seed: int = PERMUTATION_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(Δ max at equal budgets, its two-sided within-cell permutation p)."""
    return permutation_test(a, b, equal_budget_max_delta, perms, seed)


def mean_minus_max_delta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Δ mean minus Δ max at equal budgets (the paper: "the mean moves more than the best score")."""
    delta_mean = a.mean(axis=-1).mean(axis=-1) - b.mean(axis=-1).mean(axis=-1)
    return delta_mean - equal_budget_max_delta(a, b)


def max_interval(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA, perms: int = PERMUTATIONS,
                 seed: int = PERMUTATION_SEED, steps: int = 18) -> tuple[float, float]:
    """The shifts theta of A that the permutation test does not reject (A - theta against B):
    the 1 - alpha interval of Δ max that agrees with permutation_max_test by construction.
    One comparison (a: (C, KA), b: (C, KB)); each end by bisection."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    observed = float(equal_budget_max_delta(a, b))
    span = float(np.ptp(np.concatenate([a.ravel(), b.ravel()]))) + abs(observed) + 1e-9

    def accepted(theta: float) -> bool:
        return float(permutation_max_test(a - theta, b, perms, seed)[1]) > alpha

    # A shift past every score gives the most extreme statistic; if even that is not rejected, too
    # few cells exist for this level (2 arms x 4 cells allow only 16 orders): no finite interval.
    if accepted(observed + 4 * span) or accepted(observed - 4 * span):
        return -np.inf, np.inf
    ends = []
    for outward in (-1.0, 1.0):
        inside, outside = observed, observed + outward * span
        while accepted(outside):        # widen until rejected
            outside += outward * span
        if not accepted(inside):        # the observed value itself rejected: a degenerate layout
            ends.append(observed)
            continue
        for _ in range(steps):
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if accepted(mid) else (inside, mid)
        ends.append(inside)
    return ends[0], ends[1]


def adjust(p: np.ndarray, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values over the last axis (a family): Holm (family-wise error) or
    Benjamini-Hochberg (false discovery rate). NaN (no test) stays NaN and does not count in m."""
    from statsmodels.stats.multitest import multipletests
    method = {"holm": "holm", "bh": "fdr_bh"}[method]
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    for index in np.ndindex(p.shape[:-1]):
        row = p[index]
        ok = ~np.isnan(row)
        if ok.any():
            out[index][ok] = multipletests(row[ok], method=method)[1]
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm (1979) over the last axis, vectorised for the simulations (what adjust("holm") computes):
    sorted ascending, adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))."""
    p = np.asarray(p, float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    ranked = np.minimum(1.0, np.maximum.accumulate(ranked, axis=-1))
    out = np.empty_like(p)
    np.put_along_axis(out, order, ranked, axis=-1)
    return out


def minimum_detectable(se: float | np.ndarray, df: float | np.ndarray, alpha: float = ALPHA,
                       power: float = 0.80) -> np.ndarray:
    """The smallest |Δ| a two-sided t test at `alpha` detects with `power`: (t_{1-alpha/2} + t_power) se.
    After Holm over m tests, pass alpha / m (its first, strictest step)."""
    return (stats.t.ppf(1 - np.asarray(alpha) / 2, df) + stats.t.ppf(power, df)) * np.asarray(se)
