"""Tasks are data, not code: a task YAML names its files, fields, kind and labels, and this module
turns the rows of its original files into canonical examples.

Canonical examples (what tokenization sees):
  classification / regression: {"segments": [text] or [text, text_pair], "label": int | float}
  multiple_choice:             {"choices": [[first, second-or-None], ...], "label": int}
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from stilts_lab.data import readers
from stilts_lab.data.readers import FILE_KEY, LINE_KEY, file_sha256
from stilts_lab.data.transforms import apply_transforms
from stilts_lab.errors import ConfigError, DataError, StiltsError

log = logging.getLogger(__name__)

KINDS = ("classification", "regression", "multiple_choice")
FORMATS = {
    "glue_tsv": lambda path, task: readers.read_glue_tsv(path, task.get("columns")),
    "jsonl": lambda path, task: readers.read_jsonl(path),
    "csv": lambda path, task: readers.read_csv(path),
}
# Keys that belong to the stage, not to the task definition.
STAGE_KEYS = {"train_size", "eval_size", "max_epochs", "max_steps", "lr", "batch_size",
              "warmup_ratio", "weight_decay", "seed"}


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


# Every key a task YAML may hold (plus STAGE_KEYS); anything else is most likely a typo.
TASK_KEYS = {"name", "kind", "format", "fields", "label_field", "labels", "metrics", "max_length", "files",
             "hf_dataset", "hf_transforms", "transforms", "columns", "choices_field", "choice_fields",
             "carve_train_from_eval", "carve_eval_fraction", "sources", "num_fakes", "words_max", "words_min",
             "fakes"}


def check_task(task: Mapping, role: str, data_dir: str | None = None) -> None:
    """A task definition is complete before any file is read: each missing or impossible key is
    named as `<role>.<key>` (target.fields, intermediate.labels, ...)."""
    name = task.get("name")
    if not name or not isinstance(name, str):
        raise ConfigError(f"{role}.name is missing: every task YAML needs a name (used for caches and reports)")
    if task.get("kind") not in KINDS:
        raise ConfigError(f"{role}.kind of task '{name}' is {task.get('kind')!r}; expected one of {KINDS}")
    kind, fmt = task["kind"], task.get("format")
    if fmt not in FORMATS and fmt != "realfake":
        raise ConfigError(f"{role}.format of task '{name}' is {fmt!r}; known: {sorted(FORMATS) + ['realfake']}")
    fields = task.get("fields")
    if fields is None or isinstance(fields, str) or not all(isinstance(f, str) for f in fields):
        raise ConfigError(f"{role}.fields of task '{name}' is {fields!r}: expected a list of the row's text "
                          "fields, e.g. fields: [sentence1, sentence2]")
    if kind != "multiple_choice" and not 1 <= len(fields) <= 2:
        raise ConfigError(f"{role}.fields of task '{name}' names {len(fields)} fields: a {kind} task encodes "
                          "one text or a pair (1 or 2 fields)")
    if kind == "classification":
        labels = task.get("labels")
        if not labels or isinstance(labels, str) or len(labels) < 2:
            raise ConfigError(f"{role}.labels of task '{name}' is {labels!r}: a classification task lists its "
                              "labels (at least 2), e.g. labels: [entailment, not_entailment]")
    if kind == "multiple_choice" and not task.get("choices_field") and len(task.get("choice_fields") or []) < 2:
        raise ConfigError(f"{role}.choices_field of task '{name}': a multiple_choice task names its choices, "
                          "either choices_field (a list in each row) or choice_fields (2+ fields)")
    metrics = task.get("metrics")
    if not metrics or isinstance(metrics, str):
        raise ConfigError(f"{role}.metrics of task '{name}' is {metrics!r}: expected a list, e.g. [accuracy]")
    import warnings
    from stilts_lab.models.metrics import build_metrics
    try:
        with warnings.catch_warnings():  # only the names are checked here, not the metrics' memory use
            warnings.simplefilter("ignore")
            build_metrics(list(metrics), 2)
    except ConfigError as e:
        raise ConfigError(f"{role}.metrics of task '{name}': {e}") from None
    max_length = task.get("max_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= 0:
        raise ConfigError(f"{role}.max_length of task '{name}' is {max_length!r}: expected a positive integer")
    if fmt == "realfake":
        if not task.get("sources"):
            raise ConfigError(f"{role}.sources of task '{name}' is empty: name the prose files to build from")
    elif not task.get("files") and not task.get("hf_dataset"):
        raise ConfigError(f"{role}.files of task '{name}' is missing (and there is no hf_dataset): name its "
                          "files, e.g. files: {train: my/train.csv, eval: my/dev.csv}")
    elif data_dir is not None and task.get("files") and not (task.get("files") or {}).get("eval"):
        raise ConfigError(f"{role}.files.eval of task '{name}' is missing: every task needs a dev file")
    from stilts_lab.data.transforms import TRANSFORMS
    for spec in list(task.get("transforms") or []) + list(task.get("hf_transforms") or []):
        t = spec if isinstance(spec, str) else (spec or {}).get("name")
        if t not in TRANSFORMS:
            raise ConfigError(f"{role}.transforms of task '{name}': unknown transform {t!r}; "
                              f"known: {', '.join(sorted(TRANSFORMS))}")
    unknown = sorted(set(task) - TASK_KEYS - STAGE_KEYS)
    if unknown:
        log.warning("%s (task '%s'): ignoring unknown key(s) %s; known task keys: %s", role, name, unknown,
                    ", ".join(sorted(TASK_KEYS)))


def task_files(task: Mapping, data_dir: str | Path) -> dict[str, Path]:
    """Every local file a task reads, by role ("files.train", "transforms.attach_label_file.eval", ...):
    what the config hash and the intermediate key hash, so edited data never matches old results."""
    data_dir = Path(data_dir)
    if task.get("format") == "realfake":
        return {f"sources.{i}": data_dir / s for i, s in enumerate(task.get("sources") or [])}
    out = {f"files.{which}": data_dir / rel for which, rel in (task.get("files") or {}).items() if rel}
    for split in ("train", "eval"):
        out.update({f"transforms.{label}.{split}": path for label, path in _transform_files(task, split, data_dir)})
    return {label: path for label, path in out.items() if path.is_file()}


def _transform_files(task: Mapping, split: str, data_dir: str | Path) -> list[tuple[str, Path]]:
    """Files named by a transform's parameters for one split (SocialIQA's label file)."""
    found = []
    for spec in task.get("transforms") or []:
        if not isinstance(spec, Mapping):
            continue
        for param, value in spec.items():
            value = value.get(split) if isinstance(value, Mapping) else value
            if isinstance(value, str) and (Path(data_dir) / value).is_file():
                found.append((f"{spec.get('name')}.{param}", Path(data_dir) / value))
    return found


def is_carved(task: Mapping, data_dir: str | Path | None) -> bool:
    """Whether load_task carves this task's train and eval splits from one file (under split_seed)."""
    if task.get("format") == "realfake":
        return True
    if data_dir is None:
        return False
    train_rel = (task.get("files") or {}).get("train")
    return not (train_rel and (Path(data_dir) / train_rel).is_file())


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
        _local_path(task, data_dir, train_rel, "train")  # raises the two-ways message
    eval_path = _local_path(task, data_dir, files.get("eval"), "eval")
    if train_path is None or not train_path.is_file():
        rows = _read(task, eval_path, "eval", data_dir)
        return _warn_short(task, _carve(task, rows, split_seed, origin=str(eval_path),
                                        parts=_source_hashes(task, eval_path, "eval", data_dir),
                                        eval_size=None, log_it=True))
    train = _read(task, train_path, "train", data_dir)
    dev = _read(task, eval_path, "eval", data_dir)
    data = TaskData(
        train=Split(_canonical(task, train), str(train_path), _source_hashes(task, train_path, "train", data_dir)),
        eval=Split(_canonical(task, dev), str(eval_path), _source_hashes(task, eval_path, "eval", data_dir)),
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


def _missing_message(task: Mapping, path: Path | None, which: str) -> str:
    hf = task.get("hf_dataset") or {}
    hub = f"{hf.get('path')}" + (f" ({hf.get('name')})" if hf.get("name") else "") if hf else "none named"
    return (f"task '{task.get('name')}': no {which} data"
            + (f": file not found: {path}" if path else "")
            + f". Provide it either way: (1) set STILTS_DATA_DIR (config paths.data_dir) to a folder holding "
            f"{(task.get('files') or {}).get(which, '<the task files>')}, or (2) leave it unset to load the "
            f"Hugging Face dataset {hub} (needs internet).")


def _local_path(task: Mapping, data_dir: str, rel: str | None, which: str) -> Path:
    path = Path(data_dir) / rel if rel else None
    if path is None or not path.is_file():
        raise DataError(_missing_message(task, path, which))
    return path


def _source_hashes(task: Mapping, path: Path, split: str, data_dir: str) -> list[str]:
    """The data file's hash plus those of files its transforms read (SocialIQA's label file), so an
    edited label file never meets a stale tokenization cache."""
    return [file_sha256(path)] + [file_sha256(p) for _, p in _transform_files(task, split, data_dir)]


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
    examples = _canonical(task, rows)
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
        raise DataError(_missing_message(task, None, "train"))
    try:
        import datasets
        splits = {}
        for which in ("train", "eval"):
            ds = datasets.load_dataset(hf["path"], hf.get("name"), split=hf[which])
            origin = f"hf:{hf['path']}/{hf.get('name')}:{hf[which]}"
            rows = [dict(r, **{FILE_KEY: origin, LINE_KEY: i + 1}) for i, r in enumerate(ds)]
            rows = apply_transforms(rows, task.get("hf_transforms"), split=which, data_dir=None)
            splits[which] = Split(_canonical(task, rows), origin, [origin, ds._fingerprint], origin, _lines(rows))
    except StiltsError:  # a bad row in the Hub copy: its own message, with the row
        raise
    except Exception as e:  # offline, unknown dataset, ...: say both ways out
        raise DataError(_missing_message(task, None, "train") + f" Loading from the Hub failed: {e}") from None
    data = TaskData(train=splits["train"], eval=splits["eval"], carved=False)
    _check_choice_counts(task, data)
    return _warn_short(task, data)


def _canonical(task: Mapping, rows: list[dict]) -> list[dict]:
    kind = task["kind"]
    fields = list(task.get("fields") or [])
    label_field = task.get("label_field", "label")
    labels = [str(x).lower() for x in task.get("labels") or []]
    out = []
    n_choices, first_where = None, None
    for row in rows:
        where = f"{row.get(FILE_KEY)}:{row.get(LINE_KEY)}"
        missing = [k for k in fields + [label_field] if k not in row]
        if missing:
            present = [k for k in row if k not in (FILE_KEY, LINE_KEY)]
            raise DataError(f"{where}: row lacks field(s) {missing} named by task '{task['name']}' "
                            f"(the row has: {', '.join(present)})")
        raw = row[label_field]
        if kind == "regression":
            try:
                label: Any = float(raw)
            except (TypeError, ValueError):
                raise DataError(f"{where}: label {raw!r} is not a number") from None
            if not math.isfinite(label):  # one NaN label makes every loss after it NaN
                raise DataError(f"{where}: label {raw!r} is not a finite number")
        else:
            label = _label_index(raw, labels, where, task)
        empty = [k for k in fields if row[k] is None or isinstance(row[k], (list, dict))]
        if empty:
            raise DataError(f"{where}: field(s) {empty} hold no text ({[row[k] for k in empty]!r})")
        texts = [str(row[k]) for k in fields]
        if kind == "multiple_choice":
            choices = _choice_texts(task, row, where)
            # Tokenization lays the choices of all rows end to end and cuts them by the first row's
            # count: one row with a different count would shift every later example.
            if n_choices is None:
                n_choices, first_where = len(choices), where
            elif len(choices) != n_choices:
                raise DataError(f"{where}: {len(choices)} choices, but earlier rows have {n_choices} "
                                f"(as at {first_where}); every row of a multiple-choice task needs the same number")
            first = " ".join(t for t in texts if t.strip())
            example = {"choices": [[first, c] if first else [c, None] for c in choices], "label": label}
            if not 0 <= label < len(choices):
                raise DataError(f"{where}: label {raw!r} points past the {len(choices)} choices")
        else:
            example = {"segments": texts, "label": label}
        out.append(example)
    return out


def _label_index(raw, labels: list[str], where: str, task: Mapping) -> int:
    key = str(raw).strip().lower()
    if labels:
        if key in labels:
            return labels.index(key)
        # Hub copies store the label's index rather than its name (glue/rte: 0 = entailment).
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(labels):
            return raw
        raise DataError(f"{where}: unknown label {raw!r} for task '{task['name']}' "
                        f"(expected one of {task.get('labels')})")
    try:
        return int(key)
    except ValueError:
        raise DataError(f"{where}: label {raw!r} is not a choice index for task '{task['name']}'") from None


def _choice_texts(task: Mapping, row: dict, where: str) -> list[str]:
    if task.get("choices_field"):
        choices = row.get(task["choices_field"])
        if not isinstance(choices, list) or len(choices) < 2:
            raise DataError(f"{where}: field {task['choices_field']!r} is not a list of choices")
        return [str(c) for c in choices]
    keys = task.get("choice_fields") or []
    if len(keys) < 2:
        raise ConfigError(f"task '{task['name']}' is multiple_choice but names no choices_field / choice_fields")
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{where}: row lacks choice field(s) {missing}")
    return [str(row[k]) for k in keys]


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
    """The first `size` examples of a seeded permutation: the same subset for every trial that
    shares the split seed, and nested (a 500 subset contains the 250 one)."""
    if size is None or size >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in sorted(order[:size])]
