"""Transferability estimates: LogME through the package ranks informative labels above shuffled ones."""
import torch

from stilts_lab.transfer.estimators import score
from stilts_lab.transfer.features import Features


def test_logme_ranks_linear_labels_above_shuffled():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = (x @ torch.randn(16, generator=g) > 0).long()  # a linear function of the features
    shuffled = y[torch.randperm(200, generator=g)]
    real = score(Features(x, y, "classification", 200))
    fake = score(Features(x, shuffled, "classification", 200))
    assert real["LogME"][0] > fake["LogME"][0] + 0.01


def test_estimates_before_any_trial_for_a_classification_and_a_multiple_choice_target(data_dir, cache_dir, tmp_path,
                                                                                        capsys):
    """The overrides form on the embedded MiniLM, 32 training examples per target: one CSV row per
    (start, target, estimator) in the columns the report reads, and the table names each estimator."""
    import pandas as pd

    from stilts_lab.transfer.cli import main
    out = tmp_path / "estimates.csv"
    code = main(["estimate", "intermediate=none", "target=rte,copa", "target.train_size=32",
                 f"paths.data_dir={data_dir}", f"paths.cache_dir={cache_dir}", "--max-examples", "32",
                 "--out", str(out)])
    assert code == 0
    df = pd.read_csv(out)
    assert list(df.columns[:6]) == ["intermediate", "intermediate_seed", "target", "estimator", "score", "seconds"]
    assert sorted(zip(df.target, df.estimator)) == [("copa", "HScore"), ("copa", "LogME"),
                                                     ("rte", "HScore"), ("rte", "LogME")]
    assert set(df.intermediate) == {"none"} and df.intermediate_seed.isna().all()
    assert df.score.notna().all() and (df.seconds > 0).all()
    # copa's 2 choices per example become 2 rows (the answer labelled 1), rte's pairs one row each
    assert dict(zip(df.target, df.n_rows)) == {"rte": 32, "copa": 64}
    printed = capsys.readouterr().out
    assert "LogME" in printed and "HScore" in printed
