"""Named row transforms for formats that need more than field mapping. A task YAML lists them
under `transforms:` (a name, or {name: ..., <param>: ...}); each takes and returns raw rows."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from stilts_lab.data.readers import FILE_KEY, LINE_KEY, read_lines
from stilts_lab.errors import ConfigError, DataError

Transform = Callable[..., list[dict]]
TRANSFORMS: dict[str, Transform] = {}


def transform(fn: Transform) -> Transform:
    TRANSFORMS[fn.__name__] = fn
    return fn


@transform
def winogrande_blank(rows, *, sentence="sentence", options=("option1", "option2"), into="choice", **_):
    """WinoGrande: each option substituted into the sentence's `_` blank gives one choice."""
    for row in rows:
        missing = [k for k in (sentence, *options) if not isinstance(row.get(k), str)]
        if missing:
            raise DataError(f"{row[FILE_KEY]}:{row[LINE_KEY]}: row lacks text field(s) {missing}")
        text = row[sentence]
        if "_" not in text:
            raise DataError(f"{row[FILE_KEY]}:{row[LINE_KEY]}: sentence has no '_' blank")
        for i, key in enumerate(options, start=1):
            row[f"{into}{i}"] = text.replace("_", row[key], 1)
    return rows


@transform
def attach_label_file(rows, *, label_file: str, field="label", data_dir: Path | None = None, **_):
    """SocialIQA (and WinoGrande) keep labels in a separate file, one per line, row-aligned."""
    path = Path(data_dir or ".") / label_file
    labels = read_lines(path)
    if len(labels) != len(rows):
        src = rows[0][FILE_KEY] if rows else "data file"
        raise DataError(f"{path}: {len(labels)} labels for {len(rows)} rows of {src}")
    for row, label in zip(rows, labels):
        row[field] = label
    return rows


@transform
def drop_context(rows, *, fields=("ctx", "ctx_a", "ctx_b"), **_):
    """HellaSwag-p: the paper's partial-input control. Only the endings are left, so what a model
    learns can only come from artefacts of the endings, not from reasoning about the context."""
    for row in rows:
        for key in fields:
            if key in row:
                row[key] = ""
    return rows


@transform
def fill_template(rows, *, template: str, into: str, **_):
    """A new text field from the row's fields, e.g. WiC's "{word}: {sentence1}" (the target word
    in front of the first sentence, so a two-segment encoder sees which word is asked about)."""
    for row in rows:
        try:
            row[into] = template.format(**row)
        except KeyError as e:
            raise DataError(f"{row[FILE_KEY]}:{row[LINE_KEY]}: template {template!r} names field {e} "
                            f"that the row lacks") from None
    return rows


@transform
def map_values(rows, *, field: str, values: dict, into: str | None = None, **_):
    """Replaces a field's codes by text (COPA's "cause" -> "What was the cause?"); `into` keeps the
    original field and writes the text to a new one."""
    for row in rows:
        key = str(row.get(field))
        if key not in values:
            raise DataError(f"{row[FILE_KEY]}:{row[LINE_KEY]}: {field}={row.get(field)!r} is not one of "
                            f"{sorted(values)}")
        row[into or field] = values[key]
    return rows


@transform
def rename_fields(rows, *, fields: dict, **_):
    """{old: new}: lets one task YAML read two copies that name a column differently
    (GLUE's MRPC file says "#1 String" where the Hub copy says "sentence1")."""
    for row in rows:
        for old, new in fields.items():
            if old in row:
                row[new] = row.pop(old)
    return rows


def apply_transforms(rows: list[dict], specs, *, split: str, data_dir: Path | None) -> list[dict]:
    for spec in specs or []:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = spec.pop("name", None)
        if name not in TRANSFORMS:
            raise ConfigError(f"unknown transform '{name}'; known: {', '.join(sorted(TRANSFORMS))}")
        # Per-split parameters (a label file per split) are written {train: ..., eval: ...};
        # any other mapping is the parameter's value itself (map_values' table).
        params = {k: (v.get(split) if _per_split(v) else v) for k, v in spec.items()}
        if any(v is None for v in params.values()):
            continue  # e.g. no label file for this split: the rows carry their labels
        rows = TRANSFORMS[name](rows, data_dir=data_dir, **params)
    return rows


def _per_split(value) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= {"train", "eval"}
