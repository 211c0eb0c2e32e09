"""The estimators, from transformer-ranker (flairNLP): higher is better for both."""
from __future__ import annotations

import time

from transformer_ranker.estimators import HScore, LogME

from stilts_lab.transfer.features import Features

ESTIMATORS = {"LogME": LogME, "HScore": HScore}


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
