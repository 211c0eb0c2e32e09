"""Features for estimating: the target's training examples, tokenized by the pipeline's own data
module, through an encoder with no training, mean-pooled over the last layer's real tokens.

Multiple-choice reduction: every choice of an example is one row, labelled 1 when it is the
correct choice and 0 otherwise (a binary task over choices)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from stilts_lab.data.batching import LengthGroupedBatchSampler, collator
from stilts_lab.data.datamodule import TaskDataModule
from stilts_lab.data.tasks import subset
from stilts_lab.errors import ConfigError


@dataclass
class Features:
    embeddings: torch.Tensor  # (rows, hidden)
    labels: torch.Tensor      # (rows,): class ids, 0/1 per choice, or floats for regression
    kind: str
    n_examples: int


def target_data(task: Mapping, tokenizer, *, data_dir, cache_dir, split_seed: int, max_examples: int,
                realfake_file=None) -> TaskDataModule:
    """The target's training split exactly as a trial reads it (train_size subset included), capped
    at max_examples drawn at random under split_seed. The data module keeps its rows in file order
    (tasks.subset returns its draw sorted), so the head would be the file's first lines: the cap is a
    draw of its own, by the same seeded permutation (nested: a 500 cap holds the 250 one)."""
    dm = TaskDataModule(task, tokenizer, batch_size=32, seed=0, split_seed=split_seed,
                        data_dir=data_dir, cache_dir=cache_dir, realfake_file=realfake_file)
    dm.setup()
    if len(dm.train_set) > max_examples:
        keep = subset(range(len(dm.train_set)), max_examples, split_seed)
        dm.train_set = dm.train_set.select(keep)
        dm.lengths["train"] = [dm.lengths["train"][i] for i in keep]
        dm.splits["train"] = dict(dm.splits["train"], rows=[dm.splits["train"]["rows"][i] for i in keep])
    return dm


def load_encoder(source: str):
    """The encoder a start stands for, of any training method (a LoRA or BitFit checkpoint is the base
    encoder with its adapter merged or its biases set: models.methods.load_encoder)."""
    from stilts_lab.models.methods import load_encoder as load_any
    try:
        return load_any(source).eval()
    except OSError as e:
        raise ConfigError(f"cannot load encoder weights from '{source}': {e}") from None


@torch.no_grad()
def encode(dm: TaskDataModule, encoder, *, batch_size: int = 32, desc: str = "encoding") -> Features:
    kind = dm.kind
    loader = DataLoader(dm.train_set, collate_fn=collator(dm.tokenizer, kind),
                        batch_sampler=LengthGroupedBatchSampler(dm.lengths["train"], batch_size, shuffle=False))
    feats, labels = [], []
    for batch in tqdm(loader, desc=desc, unit="batch"):
        y = batch.pop("labels")
        ids = batch["input_ids"]
        if kind == "multiple_choice":  # (batch, choices, length) -> one row per choice
            n_choices = ids.shape[1]
            batch = {k: v.flatten(0, 1) for k, v in batch.items()}
            y = (torch.arange(n_choices).expand(len(y), n_choices) == y.unsqueeze(1)).flatten().long()
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        feats.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
        labels.append(y)
    return Features(torch.cat(feats), torch.cat(labels), kind, len(dm.train_set))
