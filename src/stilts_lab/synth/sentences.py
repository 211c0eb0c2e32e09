"""Prose to (prompt, real ending) pairs: the paper's sentence recipe, shared by every real-fake arm."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from stilts_lab.data.readers import read_squad_paragraphs, read_text_paragraphs


@dataclass(frozen=True)
class Sentence:
    prompt: str
    ending: str
    source: str  # "<file name>#<paragraph index>"


def clean_text(text: str) -> str:
    """The one normalisation for real and fake endings alike. SmolLM2 often writes a newline into
    a long ending; a choice with a line break (or a double space) would give the fake away."""
    return " ".join(text.split())


def split_sentence(sentence: str, words_max: int, words_min: int) -> tuple[str, str] | None:
    """(prompt, real ending), or None for a sentence too short to use: the sentence is cut to its first
    `words_max` words; the prompt is the first half, the real ending the second half minus the last word."""
    words = clean_text(sentence).split()[:words_max]
    if len(words) < words_min:
        return None
    half = len(words) // 2
    return " ".join(words[:half]), " ".join(words[half:-1])


def candidate_sentences(sources: Sequence[Path], words_max: int, words_min: int) -> list[Sentence]:
    """Every usable sentence, in file order; exact repeats dropped so that no prompt can land in
    both the training and the held-out part."""
    sentences, seen = [], set()
    for path in map(Path, sources):
        read = read_squad_paragraphs if path.suffix == ".json" else read_text_paragraphs
        for index, paragraph in enumerate(read(path)):
            for text in paragraph.split(". "):
                pair = split_sentence(text, words_max, words_min)
                if pair and pair not in seen:
                    seen.add(pair)
                    sentences.append(Sentence(*pair, source=f"{path.name}#{index}"))
    return sentences
