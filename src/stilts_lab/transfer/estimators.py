"""The estimators, from transformer-ranker (flairNLP): higher is better for each.
- LogME: the log evidence of a Bayesian linear model on the features (You et al. 2021);
- HScore: the H-score of the features' class-conditional covariance (Bao et al. 2019); classes only;
- kNN: leave-one-out k-nearest-neighbour F1 (Pearson's r for regression) on the features, k = 3,
  euclidean: transformer-ranker's NearestNeighbors with its defaults."""
from __future__ import annotations

import time

from transformer_ranker.estimators import HScore, LogME, NearestNeighbors

from stilts_lab.transfer.features import Features

ESTIMATORS = {"LogME": LogME, "HScore": HScore, "kNN": NearestNeighbors}


def score(features: Features, names=tuple(ESTIMATORS)) -> dict[str, tuple[float, float]]:
    """{estimator: (score, seconds)}. H-score needs classes, so regression targets get LogME only."""
    regression = features.kind == "regression"
    out = {}
    for name in names:
        if name == "HScore" and regression:
            continue
        start = time.perf_counter()
        value = ESTIMATORS[name](regression=regression).fit(embeddings=features.embeddings,
                                                          labels=features.labels.float() if regression else features.labels)
        out[name] = (float(value), time.perf_counter() - start)
    return out
