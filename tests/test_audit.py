"""The artifact audit on hand-made sets whose answer is known: a planted give-away must be found,
a set without one must leave every detector near chance."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from stilts_lab.errors import DataError
from stilts_lab.synth.audit import FEATURES, LEXICAL, audit_rows, read_set, surface_features

WORDS = ("river stone market council winter harbour garden letter station engine valley morning "
         "Paris Lincoln Thames October Roman army vote bridge song theatre island church").split()
CHOICES, EXAMPLES = 4, 300


def plain_ending(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_set(plant=None, seed: int = 0) -> list[dict]:
    """EXAMPLES 4-way examples whose endings all come from one process; `plant(rng, ending)` rewrites
    every fake, which is the only way real and fake differ."""
    rng = random.Random(seed)
    rows = []
    for _ in range(EXAMPLES):
        words = rng.randint(9, 14)
        endings = [plain_ending(rng, words) for _ in range(CHOICES)]
        label = rng.randrange(CHOICES)
        if plant is not None:
            endings = [e if i == label else plant(rng, e) for i, e in enumerate(endings)]
        rows.append({"prompt": plain_ending(rng, 12), "endings": endings, "label": label})
    return rows


PLANTS = {
    # What the paper's fakes did on our first build, and the other tells the audit looks for.
    "sentence_break": lambda rng, e: e.replace(" ", ". The ", 1),
    "leading_punctuation": lambda rng, e: ", " + e,
    "trailing_punctuation": lambda rng, e: e + ".",
    "word_count": lambda rng, e: " ".join(e.split()[:-3]),
    "char_count": lambda rng, e: " ".join(w + "ing" for w in e.split()),
    "capitalised_words": lambda rng, e: e.lower(),
    "repeated_ngrams": lambda rng, e: " ".join(e.split()[:4] * 3),
}


@pytest.mark.parametrize("feature", sorted(PLANTS))
def test_a_planted_give_away_is_found(feature):
    report = audit_rows(make_set(PLANTS[feature]))
    assert report["chance"] == pytest.approx(0.25)
    assert report["detectors"][feature]["accuracy"] >= 0.9, report["detectors"][feature]
    # The classifier sees the same feature, on examples it was not fitted on.
    assert report["shallow_classifier"]["accuracy"] >= 0.85
    assert report["shallow_classifier"]["scored_on"] == "held-out examples"


# A generator's vocabulary: fakes say "rapid" where real endings say "river". Each swap keeps the
# word's length and case, so every surface feature (length, capitals, punctuation, repeats) matches.
GENERATOR_WORDS = {"river": "rapid", "stone": "shore", "market": "museum", "winter": "summer", "garden": "forest"}


def overuse_generator_words(rng, ending: str) -> str:
    return " ".join(GENERATOR_WORDS.get(w, w) for w in ending.split())


def test_a_lexical_give_away_is_found_by_the_lexical_detectors_only():
    report = audit_rows(make_set(overuse_generator_words))
    assert set(report["lexical"]) == set(LEXICAL)
    for name, detector in report["lexical"].items():
        assert detector["accuracy"] >= 0.85, (name, detector)
        assert detector["scored_on"] == "held-out examples"
    for name, detector in report["detectors"].items():
        assert detector["accuracy"] <= report["chance"] + 0.075, (name, detector)
    assert report["shallow_classifier"]["accuracy"] <= report["chance"] + 0.075
    assert report["max_accuracy"] >= 0.85  # the build's headline number sees it too


def test_a_set_without_give_aways_stays_near_chance():
    report = audit_rows(make_set())
    assert report["examples"] == EXAMPLES and set(report["detectors"]) == set(FEATURES)
    for name, detector in report["detectors"].items():
        # 300 examples: one standard error is 0.025; both directions are tried, so allow ~3.
        assert detector["accuracy"] <= report["chance"] + 0.075, (name, detector)
    assert report["shallow_classifier"]["accuracy"] <= report["chance"] + 0.075
    for name, detector in report["lexical"].items():
        assert detector["accuracy"] <= report["chance"] + 0.075, (name, detector)


def test_ties_count_as_a_random_pick():
    # Every ending the same length: "pick the longest" is a 1-in-4 guess, not a win.
    rows = [{"endings": ["a b", "c d", "e f", "g h"], "label": i % 4} for i in range(8)]
    report = audit_rows(rows, prompt_field=None)
    assert report["detectors"]["word_count"]["accuracy"] == pytest.approx(0.25)


def test_features_of_one_ending():
    f = surface_features("in 1990. Then the the the city", prompt="x y in 1990.")
    assert f["sentence_break"] == 1 and f["leading_punctuation"] == 0 and f["trailing_punctuation"] == 0
    assert f["word_count"] == 7 and f["repeated_ngrams"] == 1 and f["prompt_ngrams"] == 1
    assert surface_features("U.S. Army, and")["sentence_break"] == 0  # an abbreviation mid-sentence: no break
    assert surface_features('end." more')["sentence_break"] == 1


def test_audit_command_on_a_user_set(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = make_set(PLANTS["sentence_break"])
    path.write_text("".join(json.dumps({"options": r["endings"], "answer": r["label"]}) + "\n" for r in rows))
    done = subprocess.run([sys.executable, "-m", "stilts_lab.synth", "audit", str(path), "--endings", "options",
                           "--label", "answer", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["detectors"]["sentence_break"]["accuracy"] >= 0.9


def test_a_malformed_row_names_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"endings": ["a", "b"], "label": 1}\n{"endings": ["a", "b"], "label": 2}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: .*'label'"):
        read_set(path)
    done = subprocess.run([sys.executable, "-m", "stilts_lab.synth", "audit", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "bad.jsonl:2" in done.stderr


def test_rows_with_different_numbers_of_endings_name_the_line(tmp_path):
    # Chance (1 / choices) and the rule detectors assume one count per set: a ragged set would print
    # accuracies against the wrong chance, so the audit stops at the first row that differs.
    path = tmp_path / "ragged.jsonl"
    path.write_text('{"endings": ["a", "b", "c"], "label": 0}\n{"endings": ["a", "b", "c"], "label": 1}\n'
                    '{"endings": ["a", "b"], "label": 1}\n')
    with pytest.raises(DataError, match=r"ragged\.jsonl:3: 2 endings, but earlier rows have 3 \(as at .*ragged\.jsonl:1\)"):
        read_set(path)
    done = subprocess.run([sys.executable, "-m", "stilts_lab.synth", "audit", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "ragged.jsonl:3" in done.stderr
