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
