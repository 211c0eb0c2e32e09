"""Adversarial filtering (Zellers et al. 2018, 2019): keep, per prompt, the candidate fakes that
endings-only discriminators trained on held-out folds find most real, over a few rounds.

The generator samples a pool of candidates per prompt. Each round splits the examples into folds;
for each fold, the audit's endings-only discriminators (word and character n-gram TF-IDF and the
surface features, each under a logistic regression) are trained on the other folds' real endings
against their current fakes, and score every candidate of the held-out prompts; each held-out
prompt then keeps the `num_fakes` candidates they rank most real (mean rank over the three). The
next round trains on the new fakes, so a give-away the last round left behind is learned and
filtered in turn. Every round is audited; the round whose audit is closest to chance is kept."""
from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import Counter
from typing import Sequence

from stilts_lab.synth.audit import FEATURES, LEXICAL, audit_rows, lexical_model, surface_features, surface_model

log = logging.getLogger(__name__)

FOLDS = 5
# Words listed in provenance as what the filter took out (or kept in): the most over-represented.
WORDS_REPORTED = 15
EXAMPLES_REPORTED = 3


def assemble(prompts: Sequence[str], reals: Sequence[str], fakes: Sequence[Sequence[str]],
             labels: Sequence[int]) -> list[dict]:
    """Rows of the set: each example's fakes with its real ending inserted at its label."""
    return [{"prompt": p, "endings": [*f[:label], r, *f[label:]], "label": label}
            for p, r, f, label in zip(prompts, reals, fakes, labels)]


def _audit_summary(audit: dict) -> dict:
    accuracies = {name: d["accuracy"] for name, d in audit["detectors"].items()}
    accuracies["shallow_classifier"] = audit["shallow_classifier"]["accuracy"]
    accuracies.update({name: d["accuracy"] for name, d in audit["lexical"].items()})
    return {"accuracy": accuracies, "max_accuracy": audit["max_accuracy"], "max_over_chance": audit["max_over_chance"]}


def _ranks(values) -> "np.ndarray":
    """Each value's rank among `values` scaled to [0, 1] (ties share the mean rank)."""
    import numpy as np
    from scipy.stats import rankdata

    return (rankdata(values) - 1) / max(len(values) - 1, 1) if len(values) else np.array([])


def realness(train_texts: list[str], train_prompts: list[str], train_real: list[int], score_texts: list[str],
             score_prompts: list[str], seed: int) -> "np.ndarray":
    """Mean rank, over the three discriminators trained on (text, is real), of how real each
    scored text looks: 1 is the most real-looking of `score_texts`, 0 the least."""
    import numpy as np

    def surface(texts, prompts):
        return np.array([[f[name] for name in FEATURES] for f in map(surface_features, texts, prompts)])

    ranks = []
    for name in LEXICAL:
        model = lexical_model(name, seed).fit(train_texts, train_real)
        ranks.append(_ranks(model.predict_proba(score_texts)[:, 1]))
    model = surface_model(seed).fit(surface(train_texts, train_prompts), train_real)
    ranks.append(_ranks(model.predict_proba(surface(score_texts, score_prompts))[:, 1]))
    return np.mean(ranks, axis=0)


def _round(prompts, reals, pools, current, num_fakes: int, rng: random.Random, seed: int) -> list[list[int]]:
    """One round: every prompt's fakes re-chosen by discriminators that never saw that prompt."""
    order = list(range(len(prompts)))
    rng.shuffle(order)
    folds = min(FOLDS, len(order))
    chosen = list(current)
    for fold in range(folds):
        held = order[fold::folds]
        held_set = set(held)
        train = [i for i in range(len(prompts)) if i not in held_set]
        texts = [reals[i] for i in train] + [pools[i][j] for i in train for j in current[i]]
        context = [prompts[i] for i in train] + [prompts[i] for i in train for _ in current[i]]
        real = [1] * len(train) + [0] * (len(texts) - len(train))
        candidates = [(i, j) for i in held for j in range(len(pools[i]))]
        scores = realness(texts, context, real, [pools[i][j] for i, j in candidates],
                          [prompts[i] for i, _ in candidates], seed)
        by_prompt: dict[int, list[tuple[float, int]]] = {}
        for (i, j), score in zip(candidates, scores):
            by_prompt.setdefault(i, []).append((-score, j))  # most real first; pool order breaks ties
        for i, ranked in by_prompt.items():
            chosen[i] = [j for _, j in sorted(ranked)[:num_fakes]]
    return chosen


def _words(texts) -> Counter:
    return Counter(w for t in texts for w in re.findall(r"\w+", t.lower()))


def _over_represented(counts: Counter, against: Counter, top: int = WORDS_REPORTED, min_count: int = 5) -> list:
    """Words most over-represented in `counts` against `against` (log-odds ratio, add-one smoothed)."""
    total, other = sum(counts.values()) or 1, sum(against.values()) or 1
    scored = [(math.log((c + 1) / total) - math.log((against[w] + 1) / other), w, c)
              for w, c in counts.items() if c >= min_count]
    return [{"word": w, "count": c, "log_odds": round(s, 2)} for s, w, c in sorted(scored, reverse=True)[:top]]


def dropped_report(prompts, reals, pools, kept: list[list[int]]) -> dict:
    """What the filter took out: counts, the words over-represented in dropped against kept candidates
    (and the reverse), mean word length and capitalised share of each group, and a few examples."""
    kept_texts = [pools[i][j] for i in range(len(pools)) for j in kept[i]]
    dropped = [pools[i][j] for i in range(len(pools)) for j in range(len(pools[i])) if j not in kept[i]]

    def shape(texts):
        words = [w for t in texts for w in t.split()]
        return {"mean_word_chars": round(sum(map(len, words)) / max(len(words), 1), 3),
                "capitalised_words": round(sum(w[0].isupper() for w in words) / max(len(words), 1), 4)}

    kept_words, dropped_words = _words(kept_texts), _words(dropped)
    return {"candidates": len(kept_texts) + len(dropped), "kept": len(kept_texts), "dropped": len(dropped),
            "shape": {"real": shape(reals), "kept": shape(kept_texts), "dropped": shape(dropped)},
            "words_dropped_more": _over_represented(dropped_words, kept_words),
            "words_kept_more": _over_represented(kept_words, dropped_words),
            "examples": [{"prompt": prompts[i], "real": reals[i], "kept": [pools[i][j] for j in kept[i]],
                          "dropped": [e for j, e in enumerate(pools[i]) if j not in kept[i]]}
                         for i in range(min(EXAMPLES_REPORTED, len(pools)))]}


def adversarial_filter(prompts: Sequence[str], reals: Sequence[str], pools: Sequence[Sequence[str]],
                       labels: Sequence[int], *, num_fakes: int, rounds: int, seed: int) -> tuple[list[list[str]], dict]:
    """`num_fakes` fakes per example chosen from its pool of candidates (see the module docstring),
    and the report for provenance.json: each round's audit and replaced fakes, and what was dropped.
    Round 0 is the unfiltered draw (each pool's first `num_fakes` candidates)."""
    started = time.perf_counter()
    rng = random.Random(seed)
    current = [list(range(num_fakes)) for _ in pools]

    def audit(selection):
        fakes = [[pool[j] for j in chosen] for pool, chosen in zip(pools, selection)]
        return _audit_summary(audit_rows(assemble(prompts, reals, fakes, labels), seed=seed))

    def logged(entry: dict) -> dict:  # minutes per round on a 600-example build: say where it stands
        log.info("adversarial filter, round %d of %d: %d fakes replaced, best detector %.3f (chance %.3f), %.0f s",
                 entry["round"], rounds, entry["replaced_fakes"], entry["max_accuracy"], 1 / (num_fakes + 1),
                 time.perf_counter() - started)
        return entry

    history = [logged({"round": 0, "replaced_fakes": 0, **audit(current)})]
    best, best_round = current, 0
    for round_ in range(1, rounds + 1):
        chosen = _round(prompts, reals, pools, current, num_fakes, rng, seed)
        replaced = sum(len(set(a) - set(b)) for a, b in zip(chosen, current))
        current = chosen
        history.append(logged({"round": round_, "replaced_fakes": replaced, **audit(current)}))
        if history[-1]["max_accuracy"] < history[best_round]["max_accuracy"]:
            best, best_round = current, round_
    report = {"pool": len(pools[0]) if pools else 0, "rounds": rounds, "kept_round": best_round,
              "folds": min(FOLDS, len(pools)), "history": history,
              "dropped": dropped_report(prompts, reals, pools, best),
              "seconds": round(time.perf_counter() - started, 2)}
    return [[pool[j] for j in chosen] for pool, chosen in zip(pools, best)], report
