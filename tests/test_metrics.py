"""Dev metrics against values worked out by hand on tiny examples (the arithmetic is in the comments)."""
import math
import random
from collections import Counter

import pytest
import torch
from scipy import stats
from sklearn import metrics as sklearn_metrics

from stilts_lab.errors import ConfigError
from stilts_lab.models.metrics import build_metrics, trivial_baseline

pytestmark = pytest.mark.filterwarnings("ignore:.*will save all targets and predictions")


def score(names, preds, target, num_labels=2):
    dtype = torch.float if set(names) <= {"pearson", "spearman"} else torch.long
    m = build_metrics(names, num_labels)
    return {k: float(v) for k, v in m(torch.tensor(preds, dtype=dtype), torch.tensor(target, dtype=dtype)).items()}


# preds  1 1 0 0 1 0
# target 1 0 0 0 1 1    TP 2, FP 1, TN 2, FN 1
BINARY = ([1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1])


def test_accuracy():
    assert score(["accuracy"], *BINARY)["accuracy"] == pytest.approx(4 / 6)


def test_mcc():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / sqrt(3*3*3*3) = 1/3
    assert score(["mcc"], *BINARY)["mcc"] == pytest.approx(1 / 3)
    assert score(["mcc"], [0, 1, 0, 1], [0, 1, 0, 1])["mcc"] == pytest.approx(1.0)
    assert score(["mcc"], [1, 0, 1, 0], [0, 1, 0, 1])["mcc"] == pytest.approx(-1.0)
    # a constant prediction: 0/0, which GLUE and scikit-learn define as 0 (torchmetrics' own binary
    # MCC gives 0.28 here, so a trial that collapsed to one class would look learned)
    assert score(["mcc"], [1] * 10, [0, 1, 1, 0, 1, 1, 1, 0, 1, 1])["mcc"] == 0.0
    assert score(["mcc"], [0] * 10, [0, 1, 1, 0, 1, 1, 1, 0, 1, 1])["mcc"] == 0.0


def test_f1_is_the_positive_class():
    # preds  1 1 1 1 0 0
    # target 1 0 0 1 1 0    TP 2, FP 2, FN 1: P = 1/2, R = 2/3, F1 = 2TP / (2TP + FP + FN) = 4/7
    assert score(["f1"], [1, 1, 1, 1, 0, 0], [1, 0, 0, 1, 1, 0])["f1"] == pytest.approx(4 / 7)
    # the same predictions with the classes swapped: TP 1, FP 1, FN 2 -> 2/5, so "f1" is class 1's, not an average
    assert score(["f1"], [0, 0, 0, 0, 1, 1], [0, 1, 1, 0, 0, 1])["f1"] == pytest.approx(2 / 5)


def test_macro_f1():
    # preds  0 1 1 1 2 0
    # target 0 0 1 1 2 2
    # class 0: TP 1 FP 1 FN 1 -> 2/4;  class 1: TP 2 FP 1 FN 0 -> 4/5;  class 2: TP 1 FP 0 FN 1 -> 2/3
    # macro = (1/2 + 4/5 + 2/3) / 3 = 59/90
    assert score(["macro_f1"], [0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2], 3)["macro_f1"] == pytest.approx(59 / 90)


def test_macro_f1_skips_a_class_absent_from_both():
    # CB's neutral is rare: a small dev subset may hold none, and nobody predicts it.
    # class 0: TP 1 FP 0 FN 1 -> 2/3;  class 1: TP 2 FP 1 FN 0 -> 4/5;  class 2: absent -> not averaged
    got = score(["macro_f1"], [0, 1, 1, 1], [0, 0, 1, 1], 3)["macro_f1"]
    assert got == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_pearson():
    # x 1 2 3 4, y 1 3 2 4: deviations (-1.5 -.5 .5 1.5), (-1.5 .5 -.5 1.5)
    # sum dx*dy = 2.25 - .25 - .25 + 2.25 = 4; sum dx^2 = sum dy^2 = 5 -> r = 4/5
    assert score(["pearson"], [1, 2, 3, 4], [1, 3, 2, 4], 1)["pearson"] == pytest.approx(0.8)
    assert score(["pearson"], [2, 4, 6], [3, 2, 1], 1)["pearson"] == pytest.approx(-1.0)


def test_spearman():
    # ranks equal: 1 - 6 * sum d^2 / (n (n^2 - 1)) with d = (-1 1 -1 1 0) -> 1 - 24/120 = 0.8
    assert score(["spearman"], [1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 1)["spearman"] == pytest.approx(0.8)
    # monotone but not linear: Spearman 1, Pearson below it
    got = score(["spearman", "pearson"], [1, 4, 9, 100, 25], [1, 2, 3, 5, 4], 1)
    assert got["spearman"] == pytest.approx(1.0) and got["pearson"] < 0.9
    # ties take their average rank: x ranks (1 2.5 2.5 4) against (1 2 3 4): 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert score(["spearman"], [1, 2, 2, 3], [1, 2, 3, 4], 1)["spearman"] == pytest.approx(math.sqrt(0.9))


def test_metrics_accumulate_over_batches():
    # validation updates batch by batch: the epoch's score is the whole set's, not a mean of batch scores
    m = build_metrics(["mcc"], 2)
    m.update(torch.tensor(BINARY[0][:2]), torch.tensor(BINARY[1][:2]))
    m.update(torch.tensor(BINARY[0][2:]), torch.tensor(BINARY[1][2:]))
    assert float(m.compute()["mcc"]) == pytest.approx(1 / 3)
    r = build_metrics(["spearman"], 1)
    r.update(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 1.0]))
    r.update(torch.tensor([3.0, 4.0, 5.0]), torch.tensor([4.0, 3.0, 5.0]))
    assert float(r.compute()["spearman"]) == pytest.approx(0.8)


def test_unknown_metric_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown metric.*'bleu'"):
        build_metrics(["accuracy", "bleu"], 2)


def test_trivial_baseline_by_hand():
    train, dev = [0, 1, 1, 1], [1, 0, 1, 1, 0]       # the majority label is 1
    assert trivial_baseline("accuracy", train, dev, 2) == pytest.approx(3 / 5)
    # all 1: TP 3, FP 2, FN 0 -> 6/8
    assert trivial_baseline("f1", train, dev, 2) == pytest.approx(6 / 8)
    # class 1 as above 3/4; class 0 never predicted, TP 0 -> 0; macro = 3/8
    assert trivial_baseline("macro_f1", train, dev, 2) == pytest.approx(3 / 8)
    # majority 0 predicts no positives: F1 0
    assert trivial_baseline("f1", [0, 0, 1], dev, 2) == 0.0
    # multiple choice with shuffled options: the most frequent train position, here 2 of 4
    assert trivial_baseline("accuracy", [2, 2, 0, 1, 3], [0, 1, 2, 3], 4) == pytest.approx(1 / 4)
    assert trivial_baseline("accuracy", [2, 2, 0, 1, 3], [2, 2, 2, 3], 4) == pytest.approx(3 / 4)


def majority_predictor(train, dev):
    return [Counter(train).most_common(1)[0][0]] * len(dev)


# Every classification metric, scored by scikit-learn on the majority predictor's output: an
# implementation independent of torchmetrics and of the baseline code.
SKLEARN = {
    "accuracy": lambda y, p: sklearn_metrics.accuracy_score(y, p),
    "f1": lambda y, p: sklearn_metrics.f1_score(y, p, pos_label=1, zero_division=0),
    "macro_f1": lambda y, p: sklearn_metrics.f1_score(y, p, average="macro", zero_division=0),
    "mcc": lambda y, p: sklearn_metrics.matthews_corrcoef(y, p),
}


@pytest.mark.parametrize("metric, num_labels", [("accuracy", 2), ("accuracy", 3), ("f1", 2), ("macro_f1", 3),
                                                ("mcc", 2), ("mcc", 3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trivial_baseline_is_the_majority_predictor_scored_by_sklearn(metric, num_labels, seed):
    rng = random.Random(seed)
    weights = [rng.random() + 0.2 for _ in range(num_labels)]  # unbalanced: the majority matters
    train = rng.choices(range(num_labels), weights, k=40)
    dev = rng.choices(range(num_labels), weights, k=30)
    expected = SKLEARN[metric](dev, majority_predictor(train, dev))
    assert trivial_baseline(metric, train, dev, num_labels) == pytest.approx(expected)


def test_trivial_baseline_for_regression_is_the_train_mean():
    # A constant has no correlation with anything: scipy calls it undefined, the stage records 0.
    train, dev = [0.0, 1.0, 5.0], [1.0, 3.0, 2.0, 4.0]
    mean = [sum(train) / len(train)] * len(dev)
    with pytest.warns(stats.ConstantInputWarning):
        assert math.isnan(stats.pearsonr(mean, dev).statistic)
    for metric in ("pearson", "spearman"):
        assert trivial_baseline(metric, train, dev, 1) == 0.0
    # a predictor that is not constant does correlate: the baseline is not a score of everything
    assert score(["pearson"], [1.0, 3.0, 2.0, 4.0], dev, 1)["pearson"] == pytest.approx(1.0)
