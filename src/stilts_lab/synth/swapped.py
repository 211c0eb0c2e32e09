"""Swapped distractors: real endings of other sentences, matched on word count, with no generator.

Every choice is a real Wikipedia ending, so a reader of the endings alone sits at chance by
construction; only whether an ending continues its prompt is left to learn. The distractors come
from sentences outside the set (each used once, never as a real ending), so no ending is seen both
as real and as fake."""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from stilts_lab.errors import DataError
from stilts_lab.synth.sentences import Sentence


def swapped_fakes(chosen: Sequence[Sentence], spares: Sequence[Sentence], *, num_fakes: int,
                  seed: int) -> list[list[str]]:
    """For each chosen sentence, `num_fakes` real endings of spare sentences with its ending's word
    count, drawn without replacement in a seeded order."""
    by_words: dict[int, list[str]] = defaultdict(list)
    for sentence in spares:
        by_words[len(sentence.ending.split())].append(sentence.ending)
    rng = random.Random(seed)
    for endings in by_words.values():
        rng.shuffle(endings)
    fakes = []
    for sentence in chosen:
        words = len(sentence.ending.split())
        bucket, picked = by_words[words], []
        while bucket and len(picked) < num_fakes:
            ending = bucket.pop()
            if ending != sentence.ending and ending not in picked:
                picked.append(ending)
        if len(picked) < num_fakes:
            raise DataError(f"realfake swapped: too few spare sentences with {words}-word endings for "
                            f"{len(chosen)} examples of {num_fakes + 1} choices ({len(spares)} spares): "
                            "build fewer examples or name more sources")
        fakes.append(picked)
    return fakes
