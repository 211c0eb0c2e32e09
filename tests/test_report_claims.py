"""The report's claims on small sweeps whose answers are known: the scope of a claim, the words it
earns (equivalent only through TOST, else inconclusive), the families' adjustment, the predictions'
exact p, and `report plan`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stilts_lab.report import main, write_report
from stilts_lab.report.predict import spearman_p
from tests.test_report import write_trial

SEEDS, LRS = (12, 42, 7), (1e-5, 2e-5, 3e-5, 5e-5)


def sweep(root, arms: dict, checkpoints=(42,), vanilla=None, rng=None):
    """Vanilla and intermediate arms on the same 12 cells: score = cell effect + the arm's shift
    + noise (sd `noise`), one trial per cell per checkpoint."""
    rng = rng or np.random.default_rng(0)
    cells = [(s, lr) for s in SEEDS for lr in LRS]
    cell_effect = {c: 0.6 + 0.05 * i / len(cells) for i, c in enumerate(cells)}
    for n, cell in enumerate(cells):
        write_trial(root / f"none-{n}", "none", *cell, vanilla(cell_effect[cell]) if vanilla else cell_effect[cell])
        for name, (shift, noise) in arms.items():
            for seed in checkpoints:
                write_trial(root / f"{name}-{seed}-{n}", name, *cell,
                            cell_effect[cell] + shift + rng.normal(0, noise), config={"intermediate": {"seed": seed}})
    return root


def comparison(out, name: str) -> dict:
    claims = pd.read_csv(out / "claims.csv")
    return claims[claims["claim"].str.startswith(f"{name} raises the mean")].iloc[0].to_dict()


def test_no_difference_is_equivalent_only_through_tost(tmp_path):
    """An arm equal to vanilla within a tiny noise passes TOST at ±0.01: "not supported" via
    equivalence; the same arm with a noise as wide as the margin is "inconclusive", never "no effect"."""
    # two sweeps: the residual is pooled over an experiment's arms, so a noisy arm would widen the other's
    write_report([sweep(tmp_path / "tight", {"realfake": (0.0, 0.001)})], tmp_path / "o1")
    written = write_report([sweep(tmp_path / "wide", {"realfake": (0.0, 0.03)})], tmp_path / "o2")
    tight, wide = comparison(tmp_path / "o1", "realfake"), comparison(tmp_path / "o2", "realfake")
    assert tight["result"] == "not supported" and wide["result"] == "inconclusive"
    text = (tmp_path / "o1" / "summary.md").read_text() + written["summary.md"].read_text()
    assert "equivalent (these checkpoints)" in text and "inconclusive (these checkpoints)" in text
    assert "no effect" not in text.replace('never says "no effect"', "")
    for folder in ("o1", "o2"):
        assert set(pd.read_csv(tmp_path / folder / "claims.csv")["result"]) <= {"supported", "not supported", "inconclusive"}


def test_three_checkpoints_make_a_task_level_claim_two_do_not(tmp_path):
    two = write_report([sweep(tmp_path / "two", {"realfake": (0.02, 0.005)}, checkpoints=(42, 43))], tmp_path / "o2")
    three = write_report([sweep(tmp_path / "three", {"realfake": (0.02, 0.005)}, checkpoints=(42, 43, 44))],
                         tmp_path / "o3")
    assert "(these checkpoints)" in comparison(tmp_path / "o2", "realfake")["test"]
    assert "(task level" in comparison(tmp_path / "o3", "realfake")["test"]
    power = pd.read_csv(tmp_path / "o3" / "power.csv").iloc[0]
    assert power["checkpoints"] == 3 and power["mde_task"] > power["mde_conditional"] > 0
    assert pd.isna(pd.read_csv(tmp_path / "o2" / "power.csv").iloc[0]["mde_task"])
    assert two["summary.md"].exists() and three["summary.md"].exists()


def test_holm_adjusts_over_the_family_and_bh_is_an_option(tmp_path):
    root = sweep(tmp_path / "s", {"realfake": (0.012, 0.01), "hellaswag_p": (0.0, 0.01), "realfake_p": (0.0, 0.01)})
    write_report([root], tmp_path / "holm")
    write_report([root], tmp_path / "bh", correction="bh")
    for folder in ("holm", "bh"):
        claims = pd.read_csv(tmp_path / folder / "claims.csv")
        means = claims[claims["family"].str.startswith("matrix Δ mean")]
        assert len(means) == 3 and (means["p_adj"] >= means["p"] - 1e-12).all()
    holm = pd.read_csv(tmp_path / "holm" / "claims.csv")["p_adj"]
    bh = pd.read_csv(tmp_path / "bh" / "claims.csv")["p_adj"]
    assert (bh <= holm + 1e-12).all() and (bh < holm - 1e-9).any()


# rho = 1 - sum d^2 / 35 over 6 candidates
@pytest.mark.parametrize("ranking,rho", [([1, 0, 2, 3, 5, 4], 0.8857), ([1, 2, 0, 3, 4, 5], 0.8286),
                                         ([2, 1, 0, 3, 4, 5], 0.7714)])
def test_spearman_p_is_exact_over_six_candidates(ranking, rho):
    """Six candidates: the two-sided p is the share of the 720 orderings at least as extreme
    (with 6, |rho| = 0.77 has p of about 0.10: a ranking this close to right is not yet evidence)."""
    from itertools import permutations
    from scipy import stats
    realised = np.arange(6.0)
    assert stats.spearmanr(ranking, realised).statistic == pytest.approx(rho, abs=1e-4)
    exact = np.mean([abs(stats.spearmanr(p, realised).statistic) >= rho - 1e-4 for p in permutations(range(6))])
    assert spearman_p(np.array(ranking, float), realised) == pytest.approx(exact)


def test_plan_prints_designs_that_reach_the_effect(tmp_path, capsys):
    root = sweep(tmp_path / "s", {"realfake": (0.01, 0.02), "hellaswag_p": (0.0, 0.02)}, checkpoints=(42, 43))
    assert main(["plan", str(root), "--effect", "0.01", "--family-size", "15"]) == 0
    out = capsys.readouterr().out
    assert "after Holm over 15 tests" in out and "| seeds |" in out
    assert "cheapest reaching 0.01: these checkpoints: " in out
    # a bigger effect needs fewer trials
    assert main(["plan", str(root), "--effect", "0.05", "--family-size", "15"]) == 0
    small = int(out.split("these checkpoints: ")[1].split(" trials")[0].split("= ")[1])
    big_out = capsys.readouterr().out
    big = int(big_out.split("these checkpoints: ")[1].split(" trials")[0].split("= ")[1])
    assert big < small


def test_block_design_matches_statsmodels_ols_on_the_committed_verdict():
    """An independent fit of the same model (statsmodels OLS, score ~ C(cell) + C(column), a column
    per arm and checkpoint) on the verdict's RTE trials gives the report's Δ mean and its p."""
    import statsmodels.formula.api as smf

    from stilts_lab.report.collect import collect_trials
    from stilts_lab.report.tables import comparison_table
    from tests.test_docs_claims import ROOT
    df = collect_trials([ROOT / "docs" / "verdict_matrix"])
    rte = df[(df["target"] == "rte") & df["scored"]].copy()
    rte["column"] = [f"{i}:{s}" for i, s in zip(rte["intermediate"], rte["intermediate_seed"].fillna("-"))]
    fit = smf.ols("best_dev_metric ~ 0 + C(column) + C(cell)", data=rte).fit()
    names = {c: f"C(column)[{c}]" for c in set(rte["column"])}
    weights = pd.Series(0.0, index=fit.params.index)
    for seed in ("42", "43"):
        weights[names[f"realfake_swapped:{seed}"]] += 0.5
    weights[names["none:-"]] -= 1.0
    test = fit.t_test(weights.to_numpy()[None, :])
    row = comparison_table(df).set_index(["target", "intermediate"]).loc[("rte", "realfake_swapped")]
    assert row["scope"] == "cond"
    assert row["delta_mean"] == pytest.approx(float(test.effect[0]), abs=1e-9)
    assert row["delta_mean_p"] == pytest.approx(float(test.pvalue), rel=1e-6)
