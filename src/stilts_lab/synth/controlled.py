"""Controlled fakes: endings that share the real endings' surface, so that telling them apart takes
reading. The paper's fakes give themselves away (on our first build 53% held a sentence break, which
real endings, cut from one sentence, almost never do; others started or ended with punctuation).

How: sample with a larger token budget than the real ending's while sentence-ending tokens are
banned (no sentence break can appear), cut the sample at the real ending's word count, and strip
punctuation from the edges of fakes and real endings alike. A sample that falls short of the word
count is drawn again. Rejection alone would cost ~9x the generation (65 of 600 paper examples had
three clean fakes); cutting paper fakes alone left them 8.5 words long against 12.5. What the cut
cannot match (Wikipedia's longer words and proper nouns) is balanced by building 25% more examples
and dropping those where the real ending is the longest / most capitalised too often (balance_ranks)."""
from __future__ import annotations

from stilts_lab.synth.audit import PUNCTUATION

# Characters that end a sentence or a line: a token holding any of them is never sampled.
SENTENCE_ENDERS = ".!?…\n\r"
# Sampled tokens per real-ending token: room to reach the real word count without the banned tokens.
BUDGET_SCALE, BUDGET_EXTRA = 1.5, 4


def controlled_budget(real_tokens: int) -> int:
    return int(real_tokens * BUDGET_SCALE) + BUDGET_EXTRA


def sentence_ender_ids(tokenizer) -> list[int]:
    """Vocabulary ids whose text contains a sentence-ending character (".", ". ", "?\\n", "...")."""
    ids = []
    for token_id in range(len(tokenizer)):
        if any(c in tokenizer.decode([token_id]) for c in SENTENCE_ENDERS):
            ids.append(token_id)
    return ids


class BanTokens:
    """A logits processor that gives `token_ids` zero probability. It runs before nucleus sampling,
    so the nucleus is taken over the allowed tokens."""

    def __init__(self, token_ids, vocab_size: int):
        import torch

        self.mask = torch.zeros(vocab_size, dtype=torch.bool)
        self.mask[list(token_ids)] = True
        # The mask as placed on each (device, width) it has met: copied there once, not once per token.
        self._placed = {}

    def __call__(self, input_ids, scores):
        import torch

        width = scores.shape[-1]
        mask = self._placed.get((scores.device, width))
        if mask is None:
            mask = self.mask
            if mask.shape[0] < width:  # the model's output layer may be padded past the tokenizer
                mask = torch.nn.functional.pad(mask, (0, width - mask.shape[0]))
            mask = self._placed[scores.device, width] = mask[:width].to(scores.device)
        return scores.masked_fill(mask, float("-inf"))


def strip_edges(text: str) -> str:
    """`text` without punctuation at its start or end (words made only of punctuation go too)."""
    return text.strip(PUNCTUATION + " ").strip()


def fit_to_words(text: str, words: int) -> tuple[str, bool]:
    """(`text` cut to its first `words` words with its edges stripped, whether it was cut). The
    result has fewer words when the sample was short: the caller draws it again."""
    kept = strip_edges(text).split()
    take = words
    result = strip_edges(" ".join(kept[:take]))
    # Stripping can empty the last word ("—"): take the next word too, if there is one.
    while len(result.split()) < words and take < len(kept):
        take += 1
        result = strip_edges(" ".join(kept[:take]))
    return result, take < len(kept)


# Surface features the fakes cannot match by construction: a 135M generator writes shorter words and
# fewer proper nouns than Wikipedia, so on a 600-example build the real ending was the longest in
# characters (0.315) and the most capitalised (0.310) more often than chance (0.25).
BALANCED_FEATURES = ("char_count", "capitalised_words")
# Examples built per example kept: the surplus is what balancing may drop.
OVERSAMPLE = 1.25


def balance_ranks(rows: list[dict], keep: int, seed: int, features=BALANCED_FEATURES) -> list[dict]:
    """`keep` of `rows` (in their order) chosen so that "pick the choice with the largest (smallest)
    <feature>" finds the real ending no more often than chance: while a rule beats chance on the rows
    kept, drop a row it solves (in a seeded random order); then drop rows at random. A light form
    of the adversarial filtering that built SWAG and HellaSwag, with trivial detectors as the adversary."""
    import random

    from stilts_lab.synth.audit import surface_features

    rng = random.Random(seed)
    chance = [1 / len(row["endings"]) for row in rows]
    solved = {}  # (feature, largest?) -> per-row tie-aware score of that rule
    for name in features:
        values = [[surface_features(e, row.get("prompt", ""))[name] for e in row["endings"]] for row in rows]
        for largest in (True, False):
            scores = []
            for row, vals in zip(rows, values):
                best = max(vals) if largest else min(vals)
                tied = [i for i, v in enumerate(vals) if v == best]
                scores.append((row["label"] in tied) / len(tied))
            solved[name, largest] = scores
    order = list(range(len(rows)))
    rng.shuffle(order)
    alive = set(order)
    while len(alive) > keep:
        excess = {rule: sum(s[i] - chance[i] for i in alive) for rule, s in solved.items()}
        rule = max(excess, key=excess.get)
        pool = [i for i in order if i in alive]
        if excess[rule] > 0:
            # Among the rows this rule solves, drop one that the other rules solve too, if any.
            pool = sorted((i for i in pool if solved[rule][i] > chance[i]),
                          key=lambda i: -sum(s[i] > chance[i] for s in solved.values()))
        alive.remove(pool[0])
    return [row for i, row in enumerate(rows) if i in alive]
