"""Issue 17, end to end: one real Hydra multirun (vanilla and 2 intermediates, one classification and
one multiple choice, x 2 targets, one of them multiple choice, x 2 seeds, tiny sizes), then
`python -m stilts_lab.transfer estimate SWEEP_DIR` and `python -m stilts_lab.report SWEEP_DIR`. The sweep
is built once; each test reads its outputs and checks them against what results.csv and
transfer_estimates.csv imply. 12 trials, 3 starts x 2 targets encoded: the fixture took 69 s in the
suite on an idle 2-core machine with 3 intermediates (16 trials)."""
from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

INTERMEDIATES = ["cola", "hellaswag_p"]  # real rows, no generator: seconds to train; both head kinds
TARGETS = {"rte": "accuracy", "copa": "accuracy"}  # copa: 2-way multiple choice
SEEDS = [1, 2]
TINY = ["target.train_size=24", "target.eval_size=24", "trainer.max_epochs=1", "data.batch_size=8",
        "trainer.enable_progress_bar=false",
        "intermediate.train_size=16", "intermediate.eval_size=8", "intermediate.max_steps=2",
        "intermediate.batch_size=8"]


# The scores of a ranking, written out here from their definitions (STATS.md "Scoring a ranking"), so
# that the report's own functions (report/predict.py: scipy, sklearn) are checked, not reused.

def _ranks(x) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    return [sum(1 for v in x if v < xi) + (1 + sum(1 for v in x if v == xi)) / 2 for xi in x]


def _rho(x, y) -> float | None:
    """Spearman's rho: Pearson's correlation of the ranks; None without two values and a spread in each."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


def _rho_p(x, y) -> float | None:
    """Two-sided exact permutation p: every ordering of the scores against the realised values,
    twice the smaller tail (at most 1)."""
    observed = _rho(x, y)
    if observed is None:
        return None
    null = [_rho(list(perm), y) for perm in itertools.permutations(x)]
    tol = 1e-12
    greater = sum(v >= observed - tol for v in null) / len(null)
    less = sum(v <= observed + tol for v in null) / len(null)
    return min(1.0, 2 * min(greater, less))


def _order(predicted) -> list[int]:
    """Candidates by score, highest first; among equal scores the one listed first."""
    return sorted(range(len(predicted)), key=lambda i: (-predicted[i], i))


def _ndcg(predicted, realised) -> float | None:
    """Gains: Δ above the worst candidate's; discount 1/log2(rank + 1); tied scores share their
    positions' mean gain."""
    gains = [r - min(realised) for r in realised]
    if len(gains) < 2 or not any(gains):
        return None
    discount = [1 / math.log2(rank + 2) for rank in range(len(gains))]
    order, dcg, rank = _order(predicted), 0.0, 0
    for score in sorted(set(predicted), reverse=True):
        tied = [i for i in order if predicted[i] == score]
        dcg += sum(gains[i] for i in tied) / len(tied) * sum(discount[rank:rank + len(tied)])
        rank += len(tied)
    ideal = sum(g * d for g, d in zip(sorted(gains, reverse=True), discount))
    return dcg / ideal


def _regret(k: int, predicted, realised) -> float | None:
    best = max(realised)
    if len(realised) < 2 or best == 0:
        return None
    return (best - max(realised[i] for i in _order(predicted)[:k])) / abs(best)


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir, cache_dir):
    """The sweep folder, its report folder, and what the estimate command printed."""
    root = tmp_path_factory.mktemp("transfer_sweep") / "sweep"
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(cache_dir))
    _run(["stilts_lab", "-m", f"hydra.sweep.dir={root}", *TINY,
          f"intermediate=none,{','.join(INTERMEDIATES)}", f"target={','.join(TARGETS)}",
          f"seed={','.join(map(str, SEEDS))}"], env)
    estimated = _run(["stilts_lab.transfer", "estimate", str(root), "--max-examples", "24"], env)
    _run(["stilts_lab.report", str(root)], env)
    return root, root / "report", estimated.stdout


def _arm_means(report: Path) -> pd.Series:
    """Mean best dev metric per (target, intermediate) over the scored trials, from results.csv."""
    results = pd.read_csv(report / "results.csv")
    scored = results[results["best_dev_metric"].notna() & (results["status"] != "failed")]
    return scored.groupby(["target", "intermediate"])["best_dev_metric"].mean()


def _section(text: str, start: str, end: str | None = None) -> str:
    assert start in text, f"{start!r} not in summary.md"
    part = text.split(start, 1)[1]
    return part.split(end, 1)[0] if end else part


def test_every_trial_ran(sweep):
    _, report, _ = sweep
    results = pd.read_csv(report / "results.csv")
    assert len(results) == (1 + len(INTERMEDIATES)) * len(TARGETS) * len(SEEDS)
    assert set(results["status"]) <= {"ok", "diverged"}
    counts = results.groupby(["target", "intermediate"]).size()
    assert (counts == len(SEEDS)).all() and len(counts) == (1 + len(INTERMEDIATES)) * len(TARGETS)


def test_tuning_curve_table_starts_at_each_arms_mean(sweep):
    _, report, _ = sweep
    means = _arm_means(report)
    curves = _section((report / "summary.md").read_text(), "## Tuning curves", "## Transfer matrix")
    for target in TARGETS:
        table = _section(curves, f"### {target} ", "###")
        for name in ["none", *INTERMEDIATES]:
            label = "vanilla" if name == "none" else name
            row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            # intermediate, trials, n=1, n=3, n=equal budget: n = 1 is the mean; 2 trials, so n=3 is "-"
            # and every arm is shown at n=2, the smallest trial count among the target's arms
            assert cells[1] == str(len(SEEDS))
            assert cells[2].split()[0] == f"{means[target, name]:.4f}"
            assert cells[3] == "-" and cells[4] != "-"
        assert f"n={len(SEEDS)} (equal budget)" in table


def test_transfer_matrix_cells_are_what_results_csv_implies(sweep):
    _, report, _ = sweep
    means = _arm_means(report)
    cells = pd.read_csv(report / "transfer_matrix.csv")
    assert len(cells) == len(INTERMEDIATES) * len(TARGETS)
    assert set(cells["column"]) == {f"{t} ({m})" for t, m in TARGETS.items()}
    assert set(cells["intermediate"]) == set(INTERMEDIATES)
    for r in cells.itertuples():
        assert r.delta_mean == pytest.approx(means[r.target, r.intermediate] - means[r.target, "none"])
        assert r.delta_mean_low <= r.delta_mean <= r.delta_mean_high
    # one cell, recomputed and found in summary.md's Δ mean table
    delta = means["copa", "hellaswag_p"] - means["copa", "none"]
    table = _section((report / "summary.md").read_text(), "## Transfer matrix", "## Transferability")
    table = _section(table, "### Δ mean", "### Δ max")
    header = next(line for line in table.splitlines() if line.startswith("| intermediate |"))
    column = [c.strip() for c in header.strip("|").split("|")].index("copa (accuracy)")
    row = next(line for line in table.splitlines() if line.startswith("| hellaswag_p |"))
    assert [c.strip() for c in row.strip("|").split("|")][column].startswith(f"{delta:+.4f}")


def test_estimates_are_scored_against_the_realised_deltas(sweep):
    root, report, printed = sweep
    estimates = pd.read_csv(root / "transfer_estimates.csv")
    # the plain encoder and each intermediate's checkpoint, on each target, by each estimator
    assert sorted(set(zip(estimates["intermediate"], estimates["target"], estimates["estimator"]))) == sorted(
        (i, t, e) for i in ["none", *INTERMEDIATES] for t in TARGETS for e in ("HScore", "LogME", "kNN"))
    assert estimates["checkpoint"].nunique() == 1 + len(INTERMEDIATES)
    assert "LogME" in printed and "HScore" in printed

    means = _arm_means(report)
    summary = _section((report / "summary.md").read_text(), "## Transferability estimates")
    for target in TARGETS:
        realised = {name: means[target, name] - means[target, "none"] for name in ["none", *sorted(INTERMEDIATES)]}
        for estimator in ("LogME", "HScore"):
            mine = estimates[(estimates["target"] == target) & (estimates["estimator"] == estimator)]
            predicted = mine.set_index("intermediate")["score"]
            p = [float(predicted[n]) for n in realised]
            r = [float(v) for v in realised.values()]
            expected = [_rho(p, r), _ndcg(p, r), _regret(1, p, r), _regret(3, p, r)]
            row = next(line for line in summary.splitlines() if line.startswith(f"| {target} | {estimator} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[2] == str(len(realised))  # candidates: vanilla and the intermediates
            # Spearman, its exact p, its resampled interval, P(pick best), then NDCG and Regret@1, @3
            assert [cells[3]] + cells[7:10] == ["n/a" if v is None else f"{v:.4f}" for v in expected]
            exact = _rho_p(p, r)
            assert cells[4] == ("n/a" if exact is None else f"{exact:.4f}")
            assert cells[6] == "n/a" or 0.0 <= float(cells[6]) <= 1.0
            pick, best = _order(p)[0], int(np.argmax(r))
            names = ["vanilla" if n == "none" else n for n in realised]
            assert cells[10:13] == [f"{names[pick]} ({r[pick]:+.4f})", f"{names[best]} ({r[best]:+.4f})",
                                    f"{r[best] - r[pick]:.4f}"]  # would the estimator have picked the best?
            assert float(cells[13]) == pytest.approx(mine["seconds"].sum(), abs=0.06)  # the estimate's cost


def test_the_estimates_cost_is_printed_against_the_trials(sweep):
    """The estimate command and summary.md count the trials' cost alike: their target stages' fit_seconds."""
    _, report, printed = sweep
    trials = (1 + len(INTERMEDIATES)) * len(TARGETS) * len(SEEDS)
    assert "estimating: " in printed
    line = next(line for line in printed.splitlines() if line.startswith(f"the sweep's {trials} trials: "))
    total = float(line.split(": ")[1].split(" s ")[0])
    results = pd.read_csv(report / "results.csv")
    assert total == pytest.approx(results["fit_seconds"].sum(), abs=0.06)
    summary = _section((report / "summary.md").read_text(), "## Transferability estimates")
    for target in TARGETS:
        row = next(line for line in summary.splitlines() if line.startswith(f"| {target} | LogME |"))
        spent = results.loc[results["target"] == target, "fit_seconds"].sum()
        assert float(row.strip("|").split("|")[-1]) == pytest.approx(spent, abs=0.06)


def test_every_figure_is_drawn(sweep):
    _, report, _ = sweep
    names = ["transfer_matrix.png"] + [f"{kind}_{t}.png" for kind in ("curves", "predicted", "violin")
                                       for t in TARGETS]
    for name in names:
        path = report / name
        assert path.is_file(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000, name
