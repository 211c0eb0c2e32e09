"""One DataModule for every task: the task YAML decides what it reads and how it is framed."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import lightning as L
from torch.utils.data import DataLoader

from stilts_lab.data.batching import Collator, LengthGroupedBatchSampler, example_length
from stilts_lab.data.tasks import STAGE_KEYS, load_task, shuffle_choices, subset
from stilts_lab.data.tokenize import encode_cached, fingerprint, tokenizer_fingerprint

log = logging.getLogger(__name__)


class TaskDataModule(L.LightningDataModule):
    def __init__(self, task: Mapping, tokenizer, *, batch_size: int, seed: int, split_seed: int,
                 data_dir: str | None, cache_dir: str | None, realfake_file: Path | None = None,
                 eval_batch_size: int | None = None, num_workers: int = 0):
        super().__init__()
        self.task, self.tokenizer = dict(task), tokenizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or max(batch_size, 32)
        self.seed, self.split_seed, self.num_workers = seed, split_seed, num_workers
        self.data_dir, self.cache_dir, self.realfake_file = data_dir, cache_dir, realfake_file
        self.train_set = self.eval_set = None

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
        tok_fp = tokenizer_fingerprint(self.tokenizer)
        sets = {}
        for which, split in (("train", data.train), ("eval", data.eval)):
            examples = split.examples
            if self.kind == "multiple_choice":
                examples = shuffle_choices(examples, self.split_seed)
            key = f"{self.task['name']}-{which}-" + fingerprint(
                tokenizer_fp=tok_fp, max_length=self.task["max_length"], kind=self.kind,
                task_def=task_def, source_parts=split.fingerprint_parts + [f"choices:{self.split_seed}"])
            encoded = encode_cached(examples, self.tokenizer, kind=self.kind,
                                    max_length=self.task["max_length"], key=key, cache_dir=self.cache_dir)
            size = self.task.get(f"{which}_size")
            if data.carved and which == "eval" and self.task.get("format") == "realfake":
                size = None  # the built set already holds exactly eval_size held-out examples
            sets[which] = subset(encoded, size, self.split_seed)
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

    def _collator(self) -> Collator:
        return Collator(self.tokenizer.pad_token_id, regression=self.kind == "regression")

    def train_dataloader(self) -> DataLoader:
        lengths = [example_length(ex) for ex in self.train_set]
        sampler = LengthGroupedBatchSampler(lengths, self.batch_size, shuffle=True, seed=self.seed)
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=self._collator(),
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        lengths = [example_length(ex) for ex in self.eval_set]
        sampler = LengthGroupedBatchSampler(lengths, self.eval_batch_size, shuffle=False)
        return DataLoader(self.eval_set, batch_sampler=sampler, collate_fn=self._collator(),
                          num_workers=self.num_workers)
