"""One DataModule for every task: the task YAML decides what it reads and how it is framed."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import lightning as L
from torch.utils.data import DataLoader

from stilts_lab.data.batching import LengthGroupedBatchSampler, collator
from stilts_lab.data.task_schema import STAGE_KEYS
from stilts_lab.data.tasks import load_task, shuffle_choices, subset
from stilts_lab.data.tokenize import LENGTH, encode_cached
from stilts_lab.identity import tokenization_key, tokenizer_identity

log = logging.getLogger(__name__)


class TaskDataModule(L.LightningDataModule):
    def __init__(self, task: Mapping, tokenizer, *, batch_size: int, seed: int, split_seed: int,
                 data_dir: str | None, cache_dir: str | None, realfake_file: Path | None = None,
                 eval_batch_size: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 pad_to_multiple_of: int | None = None, drop_last: bool = False):
        super().__init__()
        self.task, self.tokenizer = dict(task), tokenizer
        # evaluation keeps no activations for backward: twice the training batch fits the same memory
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or 2 * batch_size
        self.seed, self.split_seed, self.num_workers = seed, split_seed, num_workers
        # pin_memory: page-locked batches copy to a GPU asynchronously (pointless on a CPU run)
        self.pin_memory, self.pad_to_multiple_of = pin_memory, pad_to_multiple_of
        self.drop_last = drop_last  # the partial train batch (stage.py drops it for a compiled model)
        self.data_dir, self.cache_dir, self.realfake_file = data_dir, cache_dir, realfake_file
        self.train_set = self.eval_set = None
        self.lengths: dict[str, list[int]] = {}
        # per split, the source file and the 1-based data lines of the examples used: splits.json
        self.splits: dict[str, dict] = {}

    @property
    def kind(self) -> str:
        return self.task["kind"]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        data = load_task(self.task, data_dir=self.data_dir, split_seed=self.split_seed,
                         realfake_file=self.realfake_file)
        self.carved, self.origins = data.carved, {"train": data.train.origin, "eval": data.eval.origin}
        task_def = {k: v for k, v in self.task.items() if k not in STAGE_KEYS}
        tok_id = tokenizer_identity(self.tokenizer)
        sets = {}
        for which, split in (("train", data.train), ("eval", data.eval)):
            examples = split.examples
            if self.kind == "multiple_choice":
                examples = shuffle_choices(examples, self.split_seed)
            key = f"{self.task['name']}-{which}-" + tokenization_key(
                tokenizer_id=tok_id, max_length=self.task["max_length"], kind=self.kind,
                task_def=task_def, source_parts=split.fingerprint_parts + [f"choices:{self.split_seed}"])
            encoded = encode_cached(examples, self.tokenizer, kind=self.kind, max_length=self.task["max_length"],
                                    key=key, cache_dir=self.cache_dir, origin=split.origin)
            size = self.task.get(f"{which}_size")
            if data.carved and which == "eval" and self.task.get("format") == "realfake":
                size = None  # the built set already holds exactly eval_size held-out examples
            keep = subset(range(len(encoded)), size, self.split_seed)  # the same rows a list would keep
            if len(keep) < len(encoded):
                encoded = encoded.select(keep)  # an index over the memory-mapped rows, not a copy
            self.splits[which] = {"file": split.file, "rows": [split.rows[i] for i in keep]}
            self.lengths[which] = list(encoded[LENGTH])
            sets[which] = encoded.remove_columns(LENGTH)  # the sampler's input, not the model's
        self.train_set, self.eval_set = sets["train"], sets["eval"]
        log.info("task %s: %d train / %d eval examples (%s | %s)", self.task["name"], len(self.train_set),
                 len(self.eval_set), self.origins["train"], self.origins["eval"])

    @property
    def num_labels(self) -> int:
        if self.kind == "regression":
            return 1
        if self.kind == "multiple_choice":
            return len(self.train_set[0]["input_ids"])
        return len(self.task["labels"])

    def _loader(self, which: str, batch_size: int, shuffle: bool) -> DataLoader:
        sampler = LengthGroupedBatchSampler(self.lengths[which], batch_size, shuffle=shuffle, seed=self.seed,
                                            drop_last=self.drop_last)
        return DataLoader(self.train_set if which == "train" else self.eval_set, batch_sampler=sampler,
                          collate_fn=collator(self.tokenizer, self.kind, self.pad_to_multiple_of),
                          num_workers=self.num_workers, pin_memory=self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("eval", self.eval_batch_size, shuffle=False)
