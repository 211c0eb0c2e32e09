"""Length-grouped batches with dynamic padding: sequences of similar length share a batch, so
little compute goes to padding, and each batch is padded only to its own longest sequence."""
from __future__ import annotations

import random
from typing import Iterator

from torch.utils.data import Sampler
from transformers import DataCollatorForMultipleChoice, DataCollatorWithPadding


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Kept hand-written: transformers' LengthGroupedSampler is a Trainer internal whose batches run
    longest to shortest in each megabatch, in order, and it has no sorted evaluation mode.
    Training: shuffle, cut into megabatches of `group` batches, sort each megabatch by length,
    split into batches, shuffle the batch order. Randomness stays while lengths within a batch align.
    Evaluation (shuffle=False): batches of globally sorted lengths, longest first.
    drop_last (training only): leave out the one partial batch, whose batch size would be a shape of
    its own (a compiled model compiles, and under reduce-overhead records a CUDA graph, per shape)."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0, group: int = 50,
                 drop_last: bool = False):
        self.lengths, self.batch_size, self.shuffle, self.seed, self.group = lengths, batch_size, shuffle, seed, group
        self.drop_last = drop_last and shuffle
        self.epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.lengths) // self.batch_size
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        idx = list(range(len(self.lengths)))
        if not self.shuffle:
            idx.sort(key=lambda i: -self.lengths[i])
            yield from (idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size))
            return
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        rng.shuffle(idx)
        mega = self.batch_size * self.group
        batches = []
        for start in range(0, len(idx), mega):
            chunk = sorted(idx[start:start + mega], key=lambda i: self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()  # only the last megabatch's last batch can be partial
        rng.shuffle(batches)
        yield from batches


def collator(tokenizer, kind: str, pad_to_multiple_of: int | None = None):
    """transformers' padding collators: pad to the batch's longest sequence (rounded up to
    `pad_to_multiple_of`, which keeps tensor-core shapes on a GPU), build attention_mask, rename
    label -> labels. Multiple-choice batches come out as (batch, choices, length)."""
    cls = DataCollatorForMultipleChoice if kind == "multiple_choice" else DataCollatorWithPadding
    return AsDict(cls(tokenizer, pad_to_multiple_of=pad_to_multiple_of))


class AsDict:
    """The batch as a plain dict of tensors. DataCollatorWithPadding returns a BatchEncoding, and
    Lightning passes non_blocking=True only to plain tensors: BatchEncoding.to() would copy
    synchronously, a host sync every step for classification and regression. Multiple-choice
    batches are dicts already."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, features: list[dict]) -> dict:
        return dict(self.collate(features))
