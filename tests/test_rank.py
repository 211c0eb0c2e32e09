"""Ranking candidate intermediate tasks before training (transfer/rank.py), on the real encoder and data."""
from __future__ import annotations

import numpy as np
import pandas as pd

from stilts_lab.transfer.cli import main
from stilts_lab.transfer.rank import vocabulary_overlap


def test_vocabulary_overlap_by_hand():
    target = np.array([0, 3, 1, 0, 6])       # 10 token occurrences
    candidate = np.array([5, 1, 0, 0, 2])    # holds tokens 0, 1, 4
    assert vocabulary_overlap(candidate, target) == 0.9   # (3 + 6) / 10


def test_rank_orders_paraphrase_above_endings_for_rte(tmp_path, data_dir, cache_dir, monkeypatch, capsys):
    """MRPC (sentence pairs from news) reads far more like RTE than HellaSwag-p's endings: both rankers
    say so. A real-fake candidate whose set is not built is left out, naming the command that builds it."""
    monkeypatch.setenv("STILTS_DATA_DIR", str(data_dir))
    out = tmp_path / "rank.csv"
    code = main(["rank", "--target", "rte", "--candidates", "mrpc,hellaswag_p,realfake", "--max-examples", "200",
                 "--embed-examples", "24", "--out", str(out), f"paths.cache_dir={tmp_path / 'fresh'}",
                 "intermediate.train_size=999"])
    assert code == 0
    printed = capsys.readouterr()
    assert "python -m stilts_lab.synth intermediate=realfake intermediate.train_size=999" in printed.err
    scores = pd.read_csv(out).pivot_table(index="intermediate", columns="estimator", values="score")
    assert set(scores.index) == {"mrpc", "hellaswag_p"}
    assert scores.loc["mrpc", "TextEmb"] > scores.loc["hellaswag_p", "TextEmb"]
    assert scores.loc["mrpc", "VocabOverlap"] > scores.loc["hellaswag_p", "VocabOverlap"]
    assert "| 1 | mrpc |" in printed.out


def test_with_checkpoints_adds_the_checkpoint_estimators_and_the_plain_encoder(tmp_path, data_dir, monkeypatch, capsys):
    """--with-checkpoints trains each candidate's intermediate stage (here one step on 8 examples) and
    scores LogME, H-score and kNN on it and on the plain encoder, which the cheap rankers cannot score."""
    monkeypatch.setenv("STILTS_DATA_DIR", str(data_dir))
    out = tmp_path / "rank.csv"
    code = main(["rank", "--target", "rte", "--candidates", "mrpc,cola", "--max-examples", "32",
                 "--embed-examples", "16", "--with-checkpoints", "--out", str(out),
                 f"paths.cache_dir={tmp_path / 'cache'}", "target.train_size=32", "intermediate.train_size=8",
                 "intermediate.eval_size=8", "intermediate.max_steps=1", "intermediate.batch_size=8",
                 "trainer.enable_progress_bar=false"])
    assert code == 0
    df = pd.read_csv(out)
    scored = set(zip(df["intermediate"], df["estimator"]))
    for ranker in ("LogME", "HScore", "kNN"):
        assert {("none", ranker), ("mrpc", ranker), ("cola", ranker)} <= scored
    assert ("none", "TextEmb") not in scored
    # each candidate's rows name the checkpoint they were scored on; the trained checkpoints are in the cache
    keys = df[df["estimator"] == "LogME"].set_index("intermediate")["checkpoint_key"]
    assert pd.isna(keys["none"]) and keys[["mrpc", "cola"]].notna().all()
    assert {p.name for p in (tmp_path / "cache" / "intermediate").iterdir() if p.is_dir()} == {
        f"mrpc-{keys['mrpc']}", f"cola-{keys['cola']}"}
    printed = capsys.readouterr().out
    assert "checkpoint trained or reused" in printed and "| - | none |" in printed and "LogME" in printed


def test_the_report_reads_rankers_files_beside_the_estimates(tmp_path):
    """`rank --out DIR/transfer_estimates_rank_T.csv` beside DIR/transfer_estimates.csv: the report reads
    both, every estimator's rows once."""
    from stilts_lab.report.predict import read_estimates
    rows = lambda estimator, score: pd.DataFrame([dict(intermediate="mrpc", intermediate_seed=None, target="rte",  # noqa: E731
                                                       estimator=estimator, score=score, seconds=1.0)])
    rows("LogME", 0.5).to_csv(tmp_path / "transfer_estimates.csv", index=False)
    rows("TextEmb", 0.7).to_csv(tmp_path / "transfer_estimates_rank_rte.csv", index=False)
    (tmp_path / "transfer_estimates.txt").write_text("a printed table, not a CSV")
    read = read_estimates([tmp_path])
    assert sorted(zip(read["estimator"], read["score"])) == [("LogME", 0.5), ("TextEmb", 0.7)]
