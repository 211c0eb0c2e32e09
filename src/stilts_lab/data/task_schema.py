"""What a task YAML may say, checked before any file is read: each missing or impossible key is
named as `<role>.<key>`."""
from __future__ import annotations

import logging
from typing import Mapping

from stilts_lab.data import readers
from stilts_lab.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("classification", "regression", "multiple_choice")
FORMATS = {
    "glue_tsv": lambda path, task: readers.read_glue_tsv(path, task.get("columns")),
    "jsonl": lambda path, task: readers.read_jsonl(path),
    "csv": lambda path, task: readers.read_csv(path),
}
# Keys that belong to the stage, not to the task definition.
STAGE_KEYS = {"method", "train_size", "eval_size", "max_epochs", "max_steps", "lr", "batch_size",
              "warmup_ratio", "weight_decay", "seed"}


# Every key a task YAML may hold (plus STAGE_KEYS); anything else is most likely a typo.
TASK_KEYS = {"name", "kind", "format", "fields", "label_field", "labels", "metrics", "max_length", "files",
             "hf_dataset", "hf_transforms", "transforms", "columns", "choices_field", "choice_fields",
             "carve_train_from_eval", "carve_eval_fraction", "sources", "num_fakes", "words_max", "words_min",
             "fakes", "adversarial_filter"}


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
