"""The benchmarks' harness and the training-throughput arms.

`interleaved` runs every arm once per repeat (A, B, C, A, B, C), so that a change of load on a shared
machine hits every arm alike; every timing benchmark here runs its arms through it.

The arms of bench/cpu_throughput.py and bench/gpu_throughput.py train the same model on the same tokenized
rows (the project's own RTE train, so truncation is identical), batch size and max_length, for `epochs`
epochs, and report the seconds of the LAST epoch: the first one pays for warm-up (allocator, kernel
caches, Trainer and Lightning setup, compile) in every arm alike, and none of it is in the number. Inside
the clock, every arm collates its own batches (a DataLoader with num_workers=0, as each recipe ships),
runs forward, backward, clipping and the step, and the device is synchronized before the clock stops.
`measure` runs them interleaved and reports the median and range.

Arms:
  original  the 2021 recipe: fp32 (no TF32), every batch padded to max_length, random order, AdamW (foreach)
  hf        transformers' Trainer: dynamic padding to a multiple of 8, group_by_length; fp32 or bf16
  bare      a bare loop: length buckets, padding to a multiple of 8, fused AdamW; fp32 or bf16 autocast
  project   this project's trial through pipeline.run, its epoch time read from metrics.json
"""
from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch
from torch.utils.data import DataLoader
from transformers import (AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding,
                          TrainerCallback, get_linear_schedule_with_warmup)

from stilts_lab.data.batching import LengthGroupedBatchSampler
from stilts_lab.models.stage_module import synchronize

LR, WARMUP, CLIP, SEED = 1e-5, 0.1, 1.0, 42
T = TypeVar("T")


def interleaved(arms: dict[str, Callable[[], T]], repeats: int) -> Iterator[tuple[int, str, T]]:
    """(repeat, arm, its result) for every arm in order, `repeats` times over."""
    for repeat in range(repeats):
        for name, arm in arms.items():
            yield repeat, name, arm()


@dataclass
class Bench:
    rows: list[dict]              # tokenized examples: input_ids (token_type_ids), label
    tokenizer: object
    model_source: str             # a pretrained folder, or an architecture config folder when random_init
    random_init: bool
    device: str                   # "cpu" or "cuda"
    batch_size: int
    max_length: int
    epochs: int                   # the last one is timed
    project_overrides: list[str]  # the project arm's trial, same data and shape
    work: Path
    results: dict = field(default_factory=dict)  # arm -> list of ex/s, one per repeat

    def fresh_model(self):
        torch.manual_seed(SEED)
        if self.random_init:
            config = AutoConfig.from_pretrained(self.model_source, num_labels=2)
            model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
        else:
            model = AutoModelForSequenceClassification.from_pretrained(self.model_source, num_labels=2,
                                                                       attn_implementation="sdpa")
        return model.to(self.device)

    def rate(self, seconds: float) -> float:
        return len(self.rows) / seconds


def _epoch_seconds(bench: Bench, loader: DataLoader, *, bf16: bool, fused: bool) -> float:
    """Train `bench.epochs` epochs of `loader` (collating inside the loop); seconds of the last one."""
    model = bench.fresh_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, fused=fused)
    steps = len(loader) * bench.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(steps * WARMUP), steps)
    device = torch.device(bench.device)
    seconds = 0.0
    for _ in range(bench.epochs):
        synchronize(device)
        start = time.perf_counter()
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device_type=bench.device, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP, foreach=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds


def original(bench: Bench) -> float:
    torch.set_float32_matmul_precision("highest")  # 2021: no TF32
    pad = DataCollatorWithPadding(bench.tokenizer, padding="max_length", max_length=bench.max_length)
    loader = DataLoader(bench.rows, batch_size=bench.batch_size, shuffle=True, collate_fn=pad,
                        generator=torch.Generator().manual_seed(SEED))
    return bench.rate(_epoch_seconds(bench, loader, bf16=False, fused=False))


def bare(bench: Bench, *, bf16: bool) -> float:
    torch.set_float32_matmul_precision("high")
    sampler = LengthGroupedBatchSampler([len(r["input_ids"]) for r in bench.rows], bench.batch_size, shuffle=True,
                                        seed=SEED)
    loader = DataLoader(bench.rows, batch_sampler=sampler, pin_memory=bench.device == "cuda",
                        collate_fn=DataCollatorWithPadding(bench.tokenizer, pad_to_multiple_of=8))
    return bench.rate(_epoch_seconds(bench, loader, bf16=bf16, fused=True))


class _EpochClock(TrainerCallback):
    """Seconds of each Trainer epoch, the device synchronized at both ends: setup is outside it."""

    def __init__(self, device: str):
        self.device, self.seconds, self._start = torch.device(device), [], None

    def on_epoch_begin(self, args, state, control, **kwargs):
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - self._start)


def hf(bench: Bench, *, bf16: bool) -> float:
    import datasets
    from transformers import Trainer, TrainingArguments
    torch.set_float32_matmul_precision("high")
    train = datasets.Dataset.from_list([dict(r, labels=r["label"]) for r in bench.rows]).remove_columns("label")
    targs = TrainingArguments(
        output_dir=str(bench.work / "hf"), per_device_train_batch_size=bench.batch_size,
        num_train_epochs=bench.epochs, learning_rate=LR, warmup_steps=WARMUP, weight_decay=0.01,
        max_grad_norm=CLIP, bf16=bf16, train_sampling_strategy="group_by_length", save_strategy="no",
        # warmup_steps: a float in [0, 1) is a ratio of the total steps (transformers 5)
        eval_strategy="no", logging_strategy="no", report_to=[], seed=SEED, use_cpu=bench.device == "cpu",
        disable_tqdm=True, dataloader_pin_memory=bench.device == "cuda")
    clock = _EpochClock(bench.device)
    trainer = Trainer(model=bench.fresh_model(), args=targs, train_dataset=train, callbacks=[clock],
                      data_collator=DataCollatorWithPadding(bench.tokenizer, pad_to_multiple_of=8))
    trainer.train()
    return bench.rate(clock.seconds[-1])


def project(bench: Bench, extra: tuple[str, ...] = ()) -> float:
    from stilts_lab.compose import compose_config
    from stilts_lab.pipeline import run
    out = bench.work / f"project-{len(bench.results.get('project', []))}-{time.monotonic_ns()}"
    cfg = compose_config([*bench.project_overrides, *extra, f"trainer.max_epochs={bench.epochs}",
                          "resume=false", f"+output_dir={out}"])
    metrics = run(cfg)
    if metrics["status"] == "failed" or not metrics["train_seconds_per_epoch"]:
        raise RuntimeError(f"the project's trial failed: {metrics['error']}")
    if metrics["split"]["train_examples"] != len(bench.rows):
        raise RuntimeError("the project trained on other data than the other arms")
    return bench.rate(metrics["train_seconds_per_epoch"][-1])


def measure(bench: Bench, arms: dict[str, Callable[[Bench], float]], repeats: int, json_path: Path,
            header: dict) -> dict[str, dict]:
    """Run every arm `repeats` times, interleaved, writing the JSON after every arm (a timeout keeps
    what ran). Returns arm -> {"median", "min", "max", "runs"} in train ex/s."""
    for repeat, name, rate in interleaved({name: functools.partial(arm, bench) for name, arm in arms.items()}, repeats):
        bench.results.setdefault(name, []).append(round(rate, 2))
        print(f"  repeat {repeat + 1}/{repeats}  {name:12s} {rate:9.2f} train ex/s", flush=True)
        if bench.device == "cuda":
            torch.cuda.empty_cache()
        json_path.write_text(json.dumps(header | {"train_examples_per_second": summary(bench.results)}, indent=2))
    return summary(bench.results)


def summary(results: dict[str, list[float]]) -> dict[str, dict]:
    return {name: {"median": round(statistics.median(runs), 2), "min": min(runs), "max": max(runs), "runs": runs}
            for name, runs in results.items()}


def print_table(stats: dict[str, dict], mine: str = "project") -> None:
    """ex/s per arm (median and range) and the project's ratio to each peer."""
    print(f"\n{'arm':14s} {'median ex/s':>11s} {'range':>17s} {mine + ' / arm':>15s}")
    for name, s in stats.items():
        ratio = f"{stats[mine]['median'] / s['median']:.2f}" if mine in stats else "-"
        print(f"{name:14s} {s['median']:11.2f} {s['min']:8.2f}-{s['max']:<8.2f} {ratio:>15s}")
