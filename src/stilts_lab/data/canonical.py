"""Rows of a task's original files as canonical examples (what tokenization sees), each malformed
row named by its file:line:
  classification / regression: {"segments": [text] or [text, text_pair], "label": int | float}
  multiple_choice:             {"choices": [[first, second-or-None], ...], "label": int}
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from stilts_lab.data.readers import FILE_KEY, LINE_KEY
from stilts_lab.errors import ConfigError, DataError


def canonical(task: Mapping, rows: list[dict]) -> list[dict]:
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
