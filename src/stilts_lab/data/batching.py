"""Length-grouped batches with dynamic padding: sequences of similar length share a batch, so
little compute goes to padding, and each batch is padded only to its own longest sequence."""
from __future__ import annotations

import random
from typing import Iterator

import torch
from torch.utils.data import Sampler


def example_length(example: dict) -> int:
    ids = example["input_ids"]
    return max(len(x) for x in ids) if ids and isinstance(ids[0], list) else len(ids)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Training: shuffle, cut into megabatches of `group` batches, sort each megabatch by length,
    split into batches, shuffle the batch order. Randomness stays while lengths within a batch align.
    Evaluation (shuffle=False): batches of globally sorted lengths, longest first."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0, group: int = 50):
        self.lengths, self.batch_size, self.shuffle, self.seed, self.group = lengths, batch_size, shuffle, seed, group
        self.epoch = 0

    def __len__(self) -> int:
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
        rng.shuffle(batches)
        yield from batches


class Collator:
    """Pads input_ids (and token_type_ids) to the batch's longest sequence; builds attention_mask.
    Multiple-choice examples come out as (batch, choices, length)."""

    def __init__(self, pad_token_id: int, regression: bool = False):
        self.pad_token_id, self.regression = pad_token_id, regression

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        multiple_choice = isinstance(examples[0]["input_ids"][0], list)
        seqs = [c for ex in examples for c in ex["input_ids"]] if multiple_choice else [ex["input_ids"] for ex in examples]
        width = max(len(s) for s in seqs)
        batch = {"input_ids": torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long),
                 "attention_mask": torch.zeros((len(seqs), width), dtype=torch.long)}
        for i, s in enumerate(seqs):
            batch["input_ids"][i, :len(s)] = torch.tensor(s)
            batch["attention_mask"][i, :len(s)] = 1
        if "token_type_ids" in examples[0]:
            types = [c for ex in examples for c in ex["token_type_ids"]] if multiple_choice else [ex["token_type_ids"] for ex in examples]
            batch["token_type_ids"] = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, t in enumerate(types):
                batch["token_type_ids"][i, :len(t)] = torch.tensor(t)
        if multiple_choice:
            n = len(examples[0]["input_ids"])
            batch = {k: v.view(len(examples), n, width) for k, v in batch.items()}
        dtype = torch.float if self.regression else torch.long
        batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=dtype)
        return batch
