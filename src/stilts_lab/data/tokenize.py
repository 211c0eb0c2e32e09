"""Tokenize canonical examples once and cache the result under an explicit key (identity.tokenization_key).

The cache is a `datasets` Arrow folder (save_to_disk), read back memory-mapped (load_from_disk):
a 40k x 4-ending set costs page cache, not Python lists in every trial's memory. No padding here:
every example keeps its own length, and batches are padded on the fly by the collators."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import datasets
from filelock import FileLock

from stilts_lab.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1000         # examples per tokenizer call: fast batched tokenization, bounded memory
LENGTH = "length"    # column the length-grouped sampler reads; not a model input


def features(kind: str, tokenizer) -> datasets.Features:
    ids = datasets.List(datasets.Value("int32"))
    types = datasets.List(datasets.Value("int8"))
    if kind == "multiple_choice":
        ids, types = datasets.List(ids), datasets.List(types)
    cols = {"input_ids": ids}
    if "token_type_ids" in tokenizer.model_input_names:
        cols["token_type_ids"] = types
    cols["label"] = datasets.Value("float64" if kind == "regression" else "int64")
    cols[LENGTH] = datasets.Value("int32")
    return datasets.Features(cols)


def encode(examples: list[dict], tokenizer, *, kind: str, max_length: int, origin: str = "") -> Iterator[dict]:
    """Yield {"input_ids": [...] (or [[...] per choice]), "token_type_ids"?: same shape, "label", "length"}
    one example at a time, tokenizing CHUNK examples per call."""
    n_choices = check_choices(examples, origin) if kind == "multiple_choice" else 0
    for start in range(0, len(examples), CHUNK):
        chunk = examples[start:start + CHUNK]
        if kind != "multiple_choice":
            enc = _tokenize(tokenizer, [ex["segments"][0] for ex in chunk],
                            [ex["segments"][1] if len(ex["segments"]) > 1 else None for ex in chunk], max_length)
            for i, ex in enumerate(chunk):
                row = {k: v[i] for k, v in enc.items()}
                yield row | {"label": ex["label"], LENGTH: len(row["input_ids"])}
            continue
        enc = _tokenize(tokenizer, [c[0] for ex in chunk for c in ex["choices"]],
                        [c[1] for ex in chunk for c in ex["choices"]], max_length)
        if len(enc["input_ids"]) != n_choices * len(chunk):  # the slicing below would shift examples
            raise DataError(f"{origin or 'task data'}: {len(chunk)} examples of {n_choices} choices "
                            f"tokenized into {len(enc['input_ids'])} sequences")
        for i, ex in enumerate(chunk):
            row = {k: v[i * n_choices:(i + 1) * n_choices] for k, v in enc.items()}
            yield row | {"label": ex["label"], LENGTH: max(len(x) for x in row["input_ids"])}


def check_choices(examples: list[dict], origin: str) -> int:
    """The number of choices, the same in every example: the choices of all examples are tokenized
    as one flat list and cut back per example, so a ragged set would shift choices between examples."""
    n = len(examples[0]["choices"]) if examples else 0
    for i, ex in enumerate(examples):
        if len(ex["choices"]) != n:
            raise DataError(f"{origin or 'task data'}: example {i + 1} has {len(ex['choices'])} choices where "
                            f"the first has {n}; a multiple-choice task needs the same number in every example")
    return n


def _tokenize(tokenizer, firsts, seconds, max_length):
    pairs = any(s is not None for s in seconds)
    if pairs:  # a pair task with some single segments (hellaswag_p): empty second segment
        seconds = [s if s is not None else "" for s in seconds]
    enc = tokenizer(firsts, seconds if pairs else None, truncation=True, max_length=max_length,
                    padding=False, return_attention_mask=False)
    keep = ["input_ids"] + (["token_type_ids"] if "token_type_ids" in enc else [])
    return {k: enc[k] for k in keep}


def _build(examples, tokenizer, *, kind, max_length, origin, key, work_dir: Path, keep_in_memory: bool):
    """Write the encoded examples to Arrow in batches (never all of them as Python objects at once)."""
    def rows():
        yield from encode(examples, tokenizer, kind=kind, max_length=max_length, origin=origin)
    # fingerprint=key: the builder would otherwise hash the whole example list to name its files
    try:
        return datasets.Dataset.from_generator(rows, features=features(kind, tokenizer), cache_dir=str(work_dir),
                                               keep_in_memory=keep_in_memory, fingerprint=key)
    except datasets.exceptions.DatasetGenerationError as e:
        if isinstance(e.__cause__, DataError):
            raise e.__cause__ from None
        raise


def encode_cached(examples, tokenizer, *, kind, max_length, key: str, cache_dir: Path | None,
                  origin: str = "") -> datasets.Dataset:
    """The encoded examples as a Dataset: memory-mapped from cache_dir/tokenized/<key>/, built there
    on first use; in memory when there is no cache dir.

    Parallel jobs (sweep workers) share the cache: the first to need a key builds it under
    <key>.lock into a temp folder renamed into place, the others wait and read it. A usable entry is
    never moved or removed, since a job may be reading it (its memory maps, or a DataLoader worker
    reopening its files); an unusable one is replaced only while holding the lock."""
    with _quiet():
        if cache_dir is None:
            with tempfile.TemporaryDirectory() as work:
                return _build(examples, tokenizer, kind=kind, max_length=max_length, origin=origin, key=key,
                              work_dir=Path(work), keep_in_memory=True)
        path = Path(cache_dir) / "tokenized" / key
        cached = _load_usable(path, len(examples), quiet=True)  # no lock when it is already there
        if cached is not None:
            return cached
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            cached = _load_usable(path, len(examples))  # built by a parallel job while we waited?
            if cached is not None:
                return cached
            # Holding the lock, no one else writes this key: temp folders left by killed jobs are garbage.
            for stale in path.parent.glob(f".{key}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{key}.tmp-"))
            try:
                built = _build(examples, tokenizer, kind=kind, max_length=max_length, origin=origin, key=key,
                               work_dir=work / "build", keep_in_memory=False)
                built.save_to_disk(str(work / "final"))
                del built
                if path.exists():  # unusable (checked above, under the lock): set aside, removed below
                    os.replace(path, work / "unusable")
                os.replace(work / "final", path)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return datasets.load_from_disk(str(path))


def _load_usable(path: Path, n_examples: int, *, quiet: bool = False) -> datasets.Dataset | None:
    """The cached entry when it loads and holds one row per example, else None. Unlocked (quiet),
    a failure may be an entry being replaced: the caller looks again under the lock."""
    if not path.is_dir():
        return None
    try:
        cached = datasets.load_from_disk(str(path))
    except Exception as e:  # a damaged cache entry is rebuilt, never trusted
        if not quiet:
            log.warning("ignoring unreadable tokenization cache %s (%s)", path, e)
        return None
    if len(cached) == n_examples:
        return cached
    if not quiet:
        log.warning("ignoring tokenization cache %s: %d rows for %d examples", path, len(cached), n_examples)
    return None


class _quiet:
    """Hide datasets' progress bars (one per split per trial) while building and loading."""

    def __enter__(self):
        self.was_enabled = datasets.utils.logging.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *exc):
        if self.was_enabled:
            datasets.enable_progress_bars()
