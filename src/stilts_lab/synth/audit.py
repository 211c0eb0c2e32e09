"""Artifact audit of a multiple-choice real-vs-fake set: how well do detectors that never read for
meaning find the real ending? Each detector looks at one surface feature of the endings (sentence
breaks, punctuation at the edges, length, capitalisation, repeated n-grams) and picks the choice
where that feature is largest, or smallest; a shallow classifier (scikit-learn's logistic
regression) combines all the features and is scored on held-out examples only. Two lexical
detectors read the endings' words (word uni+bigram and character 2-4-gram TF-IDF, each a logistic
regression on the endings alone, never the prompt), so that "the generator's vocabulary against
Wikipedia's" is caught even when every surface feature is matched.

    python -m stilts_lab.synth audit .cache/realfake/<key>        # a built set
    python -m stilts_lab.synth audit my_set.jsonl --endings choices --label answer

A set without give-aways leaves every detector near chance (1 / number of choices)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from stilts_lab.errors import DataError

# ASCII punctuation plus the typographic marks Wikipedia prose and generators write.
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’—–…«»"
# A sentence end (possibly closed by a quote or bracket) followed by more text, or a line break; a
# period after a lone capital ("U.S. Army", "J. Smith") is an abbreviation, not a break.
SENTENCE_BREAK = re.compile(r"(?<!\b[A-Z])[.!?…][\"'”’)\]]*\s+\S|\n")
FEATURES = ("sentence_break", "leading_punctuation", "trailing_punctuation", "word_count", "char_count",
            "capitalised_words", "repeated_ngrams", "prompt_ngrams")
CV_FOLDS = 5
# Endings-only bags of n-grams: (analyzer, n-gram range) for scikit-learn's TfidfVectorizer.
LEXICAL = {"word_ngrams": ("word", (1, 2)), "char_ngrams": ("char_wb", (2, 4))}


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def surface_features(ending: str, prompt: str = "") -> dict[str, float]:
    """Features any reader sees without understanding the text. repeated_ngrams counts word bigrams
    and trigrams that recur inside the ending (a language model's loops); prompt_ngrams counts the
    ending's bigrams copied from the prompt (a language model's echo)."""
    words = ending.split()
    lower = [w.lower() for w in words]
    repeats = sum(count - 1 for n in (2, 3) for count in Counter(_ngrams(lower, n)).values())
    prompt_bigrams = set(_ngrams(prompt.lower().split(), 2))
    return {
        "sentence_break": float(bool(SENTENCE_BREAK.search(ending.strip()))),
        "leading_punctuation": float(bool(ending) and ending[0] in PUNCTUATION),
        "trailing_punctuation": float(bool(ending) and ending[-1] in PUNCTUATION),
        "word_count": float(len(words)),
        "char_count": float(len(ending)),
        "capitalised_words": sum(w[0].isupper() for w in words) / max(len(words), 1),
        "repeated_ngrams": float(repeats),
        "prompt_ngrams": float(sum(g in prompt_bigrams for g in _ngrams(lower, 2))),
    }


def _rule_accuracy(values: Sequence[Sequence[float]], labels: Sequence[int], pick_largest: bool) -> float:
    """Expected accuracy of "pick the choice with the largest (smallest) value", ties broken at
    random: an example scores 1/t when the real ending is among t tied choices, else 0."""
    total = 0.0
    for row, label in zip(values, labels):
        best = max(row) if pick_largest else min(row)
        tied = [i for i, v in enumerate(row) if v == best]
        total += (label in tied) / len(tied)
    return total / len(labels)


def _classifier_accuracy(features: list[list[dict]], labels: Sequence[int], seed: int) -> dict:
    """Logistic regression on each choice's features minus the example's mean (what makes this
    choice differ from its rivals), predicting "real"; an example is solved when its held-out
    real ending gets the highest probability. Folds split by example, so no example is both
    trained and scored on."""
    import numpy as np
    from sklearn.model_selection import GroupKFold, cross_val_predict

    x, y, groups = [], [], []
    for example, (choices, label) in enumerate(zip(features, labels)):
        matrix = np.array([[c[name] for name in FEATURES] for c in choices])
        x.extend(matrix - matrix.mean(axis=0))
        y.extend(int(i == label) for i in range(len(choices)))
        groups.extend([example] * len(choices))
    folds = min(CV_FOLDS, len(labels))
    probs = cross_val_predict(surface_model(seed), np.array(x), np.array(y), groups=groups, cv=GroupKFold(n_splits=folds),
                              method="predict_proba")[:, 1]
    return {"accuracy": _pick_accuracy(probs, [len(c) for c in features], labels), "model": "sklearn "
            "LogisticRegression on per-example-centred surface features", "cv_folds": folds,
            "scored_on": "held-out examples"}


def surface_model(seed: int):
    """The shallow classifier's model: standardised surface features under a logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


def lexical_model(name: str, seed: int):
    """The LEXICAL detector `name`: a TF-IDF bag of n-grams of one ending under a logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    analyzer, ngram_range = LEXICAL[name]
    # Every word counts, one-letter ones too ("a", "I"): scikit-learn's default pattern drops them.
    words = {"token_pattern": r"(?u)\b\w+\b"} if analyzer == "word" else {}
    return make_pipeline(TfidfVectorizer(analyzer=analyzer, ngram_range=ngram_range, sublinear_tf=True, **words),
                         LogisticRegression(max_iter=1000, random_state=seed))


def _pick_accuracy(probs, sizes: Sequence[int], labels: Sequence[int]) -> float:
    """Expected accuracy of "pick the choice scored most real" over consecutive groups of `sizes`
    scores, ties broken at random."""
    import numpy as np

    solved, start = 0.0, 0
    for size, label in zip(sizes, labels):
        row = probs[start:start + size]
        tied = np.flatnonzero(row == row.max())
        solved += (label in tied) / len(tied)
        start += size
    return round(solved / len(labels), 4)


def lexical_detectors(endings: Sequence[Sequence[str]], labels: Sequence[int], seed: int) -> dict:
    """Each LEXICAL bag of n-grams (TF-IDF, fitted on training folds only) under a logistic regression
    that predicts "real" from one ending alone; an example is solved when its held-out real ending
    scores highest. Folds split by example, as for the shallow classifier."""
    import numpy as np
    from sklearn.model_selection import GroupKFold, cross_val_predict

    texts = [str(e) for choices in endings for e in choices]
    y = np.array([int(i == label) for choices, label in zip(endings, labels) for i in range(len(choices))])
    groups = [example for example, choices in enumerate(endings) for _ in choices]
    folds = min(CV_FOLDS, len(labels))
    report = {}
    for name, (analyzer, ngram_range) in LEXICAL.items():
        probs = cross_val_predict(lexical_model(name, seed), texts, y, groups=groups, cv=GroupKFold(n_splits=folds),
                                  method="predict_proba")[:, 1]
        report[name] = {"accuracy": _pick_accuracy(probs, [len(c) for c in endings], labels),
                        "model": f"sklearn LogisticRegression on {analyzer} {ngram_range[0]}-{ngram_range[1]}-gram "
                                 "TF-IDF of the ending alone", "cv_folds": folds, "scored_on": "held-out examples"}
    return report


def audit_rows(rows: Sequence[Mapping], *, endings_field: str = "endings", label_field: str = "label",
               prompt_field: str | None = "prompt", seed: int = 0) -> dict:
    """Accuracy of every detector and of the classifier, with the chance level, over `rows`."""
    if len(rows) < 2:
        raise DataError(f"audit needs at least 2 examples, got {len(rows)}")
    features, labels = [], []
    for row in rows:
        prompt = str(row.get(prompt_field) or "") if prompt_field else ""
        features.append([surface_features(str(e), prompt) for e in row[endings_field]])
        labels.append(int(row[label_field]))
    chance = sum(1 / len(f) for f in features) / len(features)
    detectors = {}
    for name in FEATURES:
        values = [[c[name] for c in choices] for choices in features]
        largest, smallest = (_rule_accuracy(values, labels, pick) for pick in (True, False))
        # Both directions are tried and the better reported: an upper bound for a one-bit rule.
        detectors[name] = {"accuracy": round(max(largest, smallest), 4),
                           "rule": "pick the largest" if largest >= smallest else "pick the smallest"}
    classifier = _classifier_accuracy(features, labels, seed)
    lexical = lexical_detectors([row[endings_field] for row in rows], labels, seed)
    best = max([d["accuracy"] for d in (*detectors.values(), *lexical.values())] + [classifier["accuracy"]])
    return {"examples": len(rows), "chance": round(chance, 4), "detectors": detectors,
            "shallow_classifier": classifier, "lexical": lexical, "max_accuracy": best,
            "max_over_chance": round(best - chance, 4)}


def read_set(path: Path, *, endings_field: str = "endings", label_field: str = "label") -> list[dict]:
    """Rows of a built set (its folder or examples.jsonl) or any jsonl of multiple-choice examples,
    checked so that a malformed row stops with its file:line."""
    from stilts_lab.data.readers import FILE_KEY, LINE_KEY, read_jsonl

    path = Path(path)
    if path.is_dir():
        path = path / "examples.jsonl"
    if not path.is_file():
        raise DataError(f"audit: no such file {path} (give a built set's folder or a jsonl file)")
    rows = read_jsonl(path)
    first = None  # (count, where) of the first row: chance and the rule detectors assume one count
    for row in rows:
        where = f"{row[FILE_KEY]}:{row[LINE_KEY]}"
        endings, label = row.get(endings_field), row.get(label_field)
        if not isinstance(endings, list) or len(endings) < 2:
            raise DataError(f"{where}: field '{endings_field}' must be a list of at least 2 endings")
        if first is None:
            first = (len(endings), where)
        elif len(endings) != first[0]:
            raise DataError(f"{where}: {len(endings)} endings, but earlier rows have {first[0]} (as at "
                            f"{first[1]}); every row of an audited set needs the same number")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(endings):
            raise DataError(f"{where}: field '{label_field}' must be an index into '{endings_field}', got {label!r}")
    return rows


def format_audit(report: Mapping) -> str:
    """The audit as log lines: one per detector, worst first."""
    chance = report["chance"]
    lines = [f"artifact audit over {report['examples']} examples (chance {chance:.3f}):"]
    entries = [(name, d["accuracy"], d["rule"]) for name, d in report["detectors"].items()]
    entries.append(("shallow_classifier", report["shallow_classifier"]["accuracy"],
                    f"{report['shallow_classifier']['cv_folds']}-fold cross-validated"))
    # Builds audited before the lexical detectors existed have none in their provenance.json.
    for name, d in report.get("lexical", {}).items():
        entries.append((name, d["accuracy"], f"endings-only TF-IDF, {d['cv_folds']}-fold cross-validated"))
    for name, accuracy, rule in sorted(entries, key=lambda e: -e[1]):
        lines.append(f"  {name:>22}: {accuracy:.3f} ({accuracy - chance:+.3f} over chance; {rule})")
    return "\n".join(lines)
