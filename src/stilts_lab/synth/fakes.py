"""The retry loop that draws usable fakes for every chosen sentence, swapping out sentences it keeps failing on."""
from __future__ import annotations

from typing import Iterator, Mapping

from stilts_lab.errors import ConfigError
from stilts_lab.synth.controlled import BanTokens, controlled_budget, fit_to_words, sentence_ender_ids
from stilts_lab.synth.sampling import derive_seed, ending_tokens, sample_endings
from stilts_lab.synth.sentences import Sentence

# Samples tried per fake slot before its sentence is swapped for a spare one.
MAX_ATTEMPTS = 5


def usable(fake: str, real: str, budget: int | None, tokenizer) -> bool:
    """An empty fake, or one equal to the real ending, makes a trivial or unanswerable example;
    U+FFFD (a cut multi-byte character) and over-budget text are tells real endings never have.
    Controlled fakes (budget None) are held to the real ending's word count instead."""
    return (bool(fake) and fake != real and "\ufffd" not in fake
            and (budget is None or ending_tokens(tokenizer, fake) <= budget))


def fit_controlled(samples: list[str], real: str, counts: dict) -> list[str]:
    """Samples cut to the real ending's word count (edges stripped); short ones are dropped, to be
    drawn again, and counted."""
    words, fitted, short = len(real.split()), [], 0
    for sample in samples:
        fake, cut = fit_to_words(sample, words)
        if len(fake.split()) < words:
            short += 1
            continue
        counts["cut_fakes"] += cut
        fitted.append(fake)
    counts["resampled_fakes"] += short
    return fitted


def sample_fakes(model, tokenizer, chosen: list[Sentence], spares: Iterator[Sentence], *, num_fakes: int,
                 gen_cfg: Mapping, seed: int, controlled: bool = False,
                 recipe_version: int | None = None) -> tuple[list[Sentence], list[list[str]], dict]:
    """`num_fakes` usable fakes for each chosen sentence. Unusable samples are redrawn in later rounds;
    a sentence the generator keeps failing on (e.g. one it recites) is swapped for the next spare.
    Controlled: sentence-ending tokens banned, a larger budget, each sample cut to the real ending's
    word count with its edges stripped; a sample short of that count is drawn again.
    recipe_version: the build spec's; it picks the sampler (synth/sampling.py), so an old build reproduces."""
    from tqdm.auto import tqdm

    n, k = len(chosen), num_fakes
    processors = [BanTokens(sentence_ender_ids(tokenizer), len(tokenizer))] if controlled else []

    def budget(sentence: Sentence) -> int:
        tokens = ending_tokens(tokenizer, sentence.ending)
        return controlled_budget(tokens) if controlled else tokens

    budgets = [budget(s) for s in chosen]
    fakes: list[list[str]] = [[] for _ in range(n)]
    attempts = [0] * n
    # rejected_fakes: samples discarded as unusable (and drawn again); replaced_sentences: spares used.
    counts = {"generated_sequences": 0, "rejected_fakes": 0, "replaced_sentences": 0}
    if controlled:
        # constrained: sampled under the sentence-end ban; cut: longer than the real ending, cut to its
        # word count; resampled: short of it, drawn again.
        counts.update(constrained_sequences=0, cut_fakes=0, resampled_fakes=0)
    round_ = 0
    with tqdm(total=n, desc="real-fake endings", unit="example") as bar:
        while todo := [i for i in range(n) if len(fakes[i]) < k]:
            # Retry rounds resample whole prompts: rejects are rare, so simplicity beats saved compute.
            samples = sample_endings(model, tokenizer, [chosen[i].prompt for i in todo], [budgets[i] for i in todo],
                                     num_fakes=k, gen_cfg=gen_cfg, seed=derive_seed(seed, "round", round_),
                                     batch_size=int(gen_cfg["batch_size"]), progress=bar if round_ == 0 else None,
                                     processors=processors, recipe_version=recipe_version)
            counts["generated_sequences"] += k * len(todo)
            round_ += 1
            for i, new in zip(todo, samples):
                if controlled:
                    counts["constrained_sequences"] += len(new)
                    new = fit_controlled(new, chosen[i].ending, counts)
                    kept = [f for f in new if usable(f, chosen[i].ending, None, tokenizer)]
                else:
                    kept = [f for f in new if usable(f, chosen[i].ending, budgets[i], tokenizer)]
                counts["rejected_fakes"] += len(new) - len(kept)
                fakes[i] += kept[:k - len(fakes[i])]
                attempts[i] += 1
                if len(fakes[i]) < k and attempts[i] >= MAX_ATTEMPTS:
                    counts["replaced_sentences"] += 1
                    chosen[i] = next(spares, None)
                    # Failing on many sentences means broken sampling settings: stop rather than loop on.
                    if chosen[i] is None or counts["replaced_sentences"] > MAX_ATTEMPTS + n // 10:
                        raise ConfigError(f"generator {gen_cfg['name']}: after {MAX_ATTEMPTS} tries each, no usable "
                                          f"fakes (non-empty, not the real ending) for "
                                          f"{counts['replaced_sentences']} sentences; check generator.top_p and "
                                          "generator.temperature")
                    budgets[i], fakes[i], attempts[i] = budget(chosen[i]), [], 0
    return chosen, fakes, counts
