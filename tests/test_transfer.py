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
    assert real["kNN"][0] > fake["kNN"][0] + 0.1   # neighbours share a linear label, not a shuffled one


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
    assert sorted(zip(df.target, df.estimator)) == [("copa", "HScore"), ("copa", "LogME"), ("copa", "kNN"),
                                                     ("rte", "HScore"), ("rte", "LogME"), ("rte", "kNN")]
    assert set(df.intermediate) == {"none"} and df.intermediate_seed.isna().all()
    # the report joins rows to arms by model and checkpoint key: the plain encoder has no key
    assert set(df.model) == {"minilm_l6"} and df.checkpoint_key.isna().all()
    assert df.score.notna().all() and (df.seconds > 0).all()
    # copa's 2 choices per example become 2 rows (the answer labelled 1), rte's pairs one row each
    assert dict(zip(df.target, df.n_rows)) == {"rte": 32, "copa": 64}
    printed = capsys.readouterr().out
    assert "LogME" in printed and "HScore" in printed and "kNN" in printed


def test_a_checkpoint_is_keyed_as_its_trials_record_it(tmp_path):
    """The key of metrics.json's intermediate_checkpoint: the stage record's, else the cache folder's
    name (<cache>/intermediate/<task>-<key>); none for the plain encoder."""
    import json

    from stilts_lab.transfer.estimate import checkpoint_key
    from stilts_lab.transfer.plan import Start

    recorded = tmp_path / "intermediate" / "cola-0123abcd"
    recorded.mkdir(parents=True)
    (recorded / "stage_metrics.json").write_text(json.dumps({"key": "0123abcd", "task": "cola"}))
    bare = tmp_path / "intermediate" / "realfake_p-1e5"  # no record; a key that looks like a number
    bare.mkdir()
    assert checkpoint_key(Start("cola", 1, str(recorded))) == "0123abcd"
    assert checkpoint_key(Start("realfake_p", 1, str(bare))) == "1e5"
    assert checkpoint_key(Start("none", None, "sentence-transformers/all-MiniLM-L6-v2")) is None


def test_the_table_keeps_two_checkpoints_of_one_name_and_seed_apart():
    """Two ablation arms' checkpoints (another intermediate.train_size, the same name and seed) are
    two rows of the printed table, not one averaged row."""
    import pandas as pd

    from stilts_lab.transfer.cli import table
    df = pd.DataFrame([dict(intermediate=i, intermediate_seed=s, target="rte", estimator="LogME", score=v,
                            checkpoint_key=k) for i, s, k, v in
                       (("none", None, None, 0.5), ("realfake", 1, "k250", 0.25), ("realfake", 1, "k500", 0.75))])
    df["intermediate_seed"] = df["intermediate_seed"].astype("Int64")
    lines = table(df).splitlines()
    assert len(lines) == 4
    assert any("k250" in line and "0.2500" in line for line in lines)
    assert any("k500" in line and "0.7500" in line for line in lines)


def test_a_sweep_over_two_models_is_estimated_one_model_at_a_time(tmp_path, capsys):
    """The plan encodes every start with one model's tokenizer: two models are refused before any
    intermediate stage is trained, with the way out."""
    from stilts_lab.transfer.cli import main
    code = main(["estimate", "intermediate=cola", "model=minilm_l6,roberta_base", "target=rte",
                 "--out", str(tmp_path / "e.csv")])
    assert code == 1
    assert "trials of 2 models (minilm_l6, roberta_base); estimate each model on its own" in capsys.readouterr().err
    assert not (tmp_path / "e.csv").exists()
