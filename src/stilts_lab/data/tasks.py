"""Tasks are data, not code: a task YAML names its files, fields, kind and labels, and this module
loads both splits of a task (local files, a built set, or the Hugging Face Hub), carving one file
into train and eval where the data root has no train split. Rows become canonical examples in
canonical.py; what a task YAML may say is checked in task_schema.py."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from stilts_lab.data import readers
from stilts_lab.data.canonical import canonical
from stilts_lab.data.readers import FILE_KEY, LINE_KEY, file_sha256
from stilts_lab.data.task_files import local_path, missing_message, source_hashes
from stilts_lab.data.task_schema import FORMATS
from stilts_lab.data.transforms import apply_transforms
from stilts_lab.errors import ConfigError, DataError, StiltsError

log = logging.getLogger(__name__)


@dataclass
class Split:
    examples: list[dict]
    origin: str                 # where the examples came from, for logs and metrics.json
    fingerprint_parts: list[str] = field(default_factory=list)
    file: str = ""              # the source file (or Hub split), for splits.json
    rows: list[int] = field(default_factory=list)  # each example's 1-based data line in `file`


@dataclass
class TaskData:
    train: Split
    eval: Split
    carved: bool                # train and eval were carved from one file (no official train split here)


def _lines(rows: list[dict]) -> list[int]:
    return [int(r[LINE_KEY]) for r in rows]


def load_task(task: Mapping, *, data_dir: str | None, split_seed: int, realfake_file: Path | None = None) -> TaskData:
    """Read, transform and canonicalize both splits of a task."""
    if task.get("format") == "realfake":
        rows = readers.read_jsonl(realfake_file)
        return _carve(task, rows, split_seed, origin=str(realfake_file),
                      parts=[file_sha256(realfake_file)], eval_size=task.get("eval_size"), log_it=False)
    if data_dir is None:
        return _load_hub(task)
    files = task.get("files") or {}
    train_rel = files.get("train")
    train_path = Path(data_dir) / train_rel if train_rel else None
    if not task.get("carve_train_from_eval", False):
        local_path(task, data_dir, train_rel, "train")  # raises the two-ways message
    eval_path = local_path(task, data_dir, files.get("eval"), "eval")
    if train_path is None or not train_path.is_file():
        rows = _read(task, eval_path, "eval", data_dir)
        return _warn_short(task, _carve(task, rows, split_seed, origin=str(eval_path),
                                        parts=source_hashes(task, eval_path, "eval", data_dir),
                                        eval_size=None, log_it=True))
    train = _read(task, train_path, "train", data_dir)
    dev = _read(task, eval_path, "eval", data_dir)
    data = TaskData(
        train=Split(canonical(task, train), str(train_path), source_hashes(task, train_path, "train", data_dir)),
        eval=Split(canonical(task, dev), str(eval_path), source_hashes(task, eval_path, "eval", data_dir)),
        carved=False)
    data.train.file, data.train.rows = str(train_path), _lines(train)
    data.eval.file, data.eval.rows = str(eval_path), _lines(dev)
    _check_choice_counts(task, data)
    return _warn_short(task, data)


def _check_choice_counts(task: Mapping, data: TaskData) -> None:
    """The head and the dev metric are sized by the training examples' choice count."""
    if task["kind"] != "multiple_choice" or not data.train.examples or not data.eval.examples:
        return
    n_train, n_eval = len(data.train.examples[0]["choices"]), len(data.eval.examples[0]["choices"])
    if n_train != n_eval:
        raise DataError(f"{data.eval.origin}: rows have {n_eval} choices, but the training rows "
                        f"({data.train.origin}) have {n_train}")


def _warn_short(task: Mapping, data: TaskData) -> TaskData:
    """Asking for more examples than exist trains on all of them: say so (metrics.json records the
    real counts under split.train_examples / split.eval_examples)."""
    for which, split in (("train", data.train), ("eval", data.eval)):
        size = task.get(f"{which}_size")
        if isinstance(size, int) and size > len(split.examples):
            log.warning("task %s: %s_size=%d asks for more than the %d %s examples in %s; using all %d",
                        task.get("name"), which, size, len(split.examples), which, split.origin, len(split.examples))
    return data


def _read(task: Mapping, path: Path, split: str, data_dir: str) -> list[dict]:
    rows = FORMATS[task["format"]](path, task)
    if not rows:  # an empty split would fail later, far from its cause (baseline, batching)
        raise DataError(f"{path}: " + ("empty file" if path.stat().st_size == 0 else
                                      "no data rows (the file holds only a header line)"))
    return apply_transforms(rows, task.get("transforms"), split=split, data_dir=Path(data_dir))


def _carve(task, rows, split_seed, *, origin, parts, eval_size, log_it) -> TaskData:
    """Deterministic train/eval split of one file, for tasks whose train split is not on disk
    (and for built data sets like realfake, which come as one file). The carve depends only on the
    file's rows and split_seed, never on the stage or the task reading it: tasks that share a file
    (hellaswag and hellaswag_p) and both stages of one trial carve it the same way, so no eval row
    is trained on in either stage. train_size / eval_size subsets are drawn afterwards, inside each side."""
    order = list(range(len(rows)))
    random.Random(split_seed).shuffle(order)
    n_eval = eval_size if eval_size else max(1, round(len(rows) * float(task.get("carve_eval_fraction", 0.3))))
    if n_eval >= len(rows):
        raise ConfigError(f"task '{task.get('name')}': eval_size {n_eval} leaves no training rows "
                          f"out of {len(rows)} in {origin}")
    examples = canonical(task, rows)
    dev = [examples[i] for i in order[:n_eval]]
    train = [examples[i] for i in order[n_eval:]]
    lines = _lines(rows)
    if log_it:
        log.warning("task %s: no train split in the data root; carved %d train / %d eval examples from %s "
                    "(split_seed %d). Scores are NOT on the official dev split.",
                    task.get("name"), len(train), len(dev), origin, split_seed)
    tag = f"carved:{split_seed}:{n_eval}"
    return TaskData(train=Split(train, f"{origin} (carved train)", parts + [tag], origin,
                                [lines[i] for i in order[n_eval:]]),
                    eval=Split(dev, f"{origin} (carved eval)", parts + [tag], origin,
                               [lines[i] for i in order[:n_eval]]), carved=True)


def _load_hub(task: Mapping) -> TaskData:
    hf = task.get("hf_dataset")
    if not hf:
        raise DataError(missing_message(task, None, "train"))
    try:
        import datasets
        splits = {}
        for which in ("train", "eval"):
            ds = datasets.load_dataset(hf["path"], hf.get("name"), split=hf[which])
            origin = f"hf:{hf['path']}/{hf.get('name')}:{hf[which]}"
            rows = [dict(r, **{FILE_KEY: origin, LINE_KEY: i + 1}) for i, r in enumerate(ds)]
            rows = apply_transforms(rows, task.get("hf_transforms"), split=which, data_dir=None)
            splits[which] = Split(canonical(task, rows), origin, [origin, ds._fingerprint], origin, _lines(rows))
    except StiltsError:  # a bad row in the Hub copy: its own message, with the row
        raise
    except Exception as e:  # offline, unknown dataset, ...: say both ways out
        raise DataError(missing_message(task, None, "train") + f" Loading from the Hub failed: {e}") from None
    data = TaskData(train=splits["train"], eval=splits["eval"], carved=False)
    _check_choice_counts(task, data)
    return _warn_short(task, data)


def shuffle_choices(examples: list[dict], seed: int) -> list[dict]:
    """Options in a fixed position can carry the answer (the original real-fake code always put the
    real ending first); shuffle each example's choices under the seed and move the label with them."""
    rng = random.Random(seed)
    out = []
    for ex in examples:
        order = list(range(len(ex["choices"])))
        rng.shuffle(order)
        out.append({"choices": [ex["choices"][i] for i in order], "label": order.index(ex["label"])})
    return out


def subset(examples: list[dict], size: int | None, seed: int) -> list[dict]:
    """The first `size` examples of a seeded permutation, returned in their original (file) order:
    the same subset for every trial that shares the split seed, and nested (a 500 subset contains the
    250 one). The order is the file's, so the head of the result is not a random draw: take a smaller
    random subset with another call (transfer/features.py does)."""
    if size is None or size >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in sorted(order[:size])]
