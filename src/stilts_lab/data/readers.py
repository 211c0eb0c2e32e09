"""One reader per file format. Each yields plain dicts and records where a row came from,
so that later validation errors can name the file and line.

Kept hand-written rather than `datasets.load_dataset("json"/"csv")`: Arrow's parsers place a bad row
within a parse block, not at a file line, and an error here must name the file and line."""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Sequence

from stilts_lab.errors import DataError

# Keys every reader adds to each row, used in error messages downstream.
FILE_KEY, LINE_KEY = "__file__", "__line__"


def _require(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    return path


def read_text(path: Path) -> str:
    """The file as text. Data files are UTF-8 (a BOM is dropped); anything else stops with the
    file and line, and a hint at what the file is, instead of a UnicodeDecodeError."""
    path = _require(path)
    data = path.read_bytes()
    head = data[:200]
    # UTF-16 text without a BOM: ASCII characters come with a NUL byte every other byte.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
            len(head) >= 4 and max(head[0::2].count(0), head[1::2].count(0)) > len(head) // 4):
        raise DataError(f"{path}: not UTF-8 text (looks like UTF-16): save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        binary = sum(b < 9 or 13 < b < 32 for b in data[:4096]) > len(data[:4096]) // 20
        hint = "looks like a binary file, not text" if binary else "save it as UTF-8"
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); {hint}") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise DataError(f"{path}:{line}: NUL byte in a text file: looks like a binary file, not text")
    return text


def file_sha256(path: Path) -> str:
    """Content hash of a source file, for cache keys and provenance."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_glue_tsv(path: Path, columns: Sequence[str] | None = None) -> list[dict]:
    """GLUE TSV: tab-separated with no quoting (quote characters are text, as in GLUE's own
    processors); a header row unless `columns` names them (CoLA has none); MRPC opens with a BOM."""
    path = _require(path)
    rows = []
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(columns) if columns else next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file")
        for fields in reader:
            line = reader.line_num
            if not fields or fields == [""]:
                continue
            if len(fields) != len(header):
                raise DataError(f"{path}:{line}: expected {len(header)} tab-separated fields "
                                f"({', '.join(header)}), found {len(fields)}")
            row = dict(zip(header, fields))
            row[FILE_KEY], row[LINE_KEY] = str(path), line
            rows.append(row)
    return rows


def read_jsonl(path: Path) -> list[dict]:
    path = _require(path)
    rows = []
    with io.StringIO(read_text(path)) as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line}: expected a JSON object, found {type(row).__name__}")
            row[FILE_KEY], row[LINE_KEY] = str(path), line
            rows.append(row)
    return rows


def read_csv(path: Path) -> list[dict]:
    """Comma-separated with a header row and standard quoting (CosmosQA)."""
    path = _require(path)
    rows = []
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            if None in row or None in row.values():
                raise DataError(f"{path}:{reader.line_num}: expected {len(reader.fieldnames)} "
                                f"comma-separated fields ({', '.join(reader.fieldnames)})")
            row[FILE_KEY], row[LINE_KEY] = str(path), reader.line_num
            rows.append(row)
    return rows


def read_lines(path: Path) -> list[str]:
    """One value per line (WinoGrande / SocialIQA label files)."""
    path = _require(path)
    return [t.strip() for t in read_text(path).splitlines() if t.strip()]


def read_squad_paragraphs(path: Path) -> list[str]:
    """SQuAD v1.1 JSON: the paragraph contexts, in file order (questions are not needed)."""
    path = _require(path)
    try:
        doc = json.loads(read_text(path))
        return [p["context"] for article in doc["data"] for p in article["paragraphs"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not SQuAD v1.1 JSON ({e})") from None


def read_text_paragraphs(path: Path) -> list[str]:
    """Raw text, one paragraph per non-empty line; WikiText ` = Heading = ` lines are skipped
    and its tokenisation artefacts (` @-@ `, space before punctuation) undone so the prose reads
    like the SQuAD paragraphs it is mixed with."""
    path = _require(path)
    paragraphs = []
    for text in read_text(path).splitlines():
        text = text.strip()
        if not text or (text.startswith("=") and text.endswith("=")):
            continue
        paragraphs.append(detokenize_wikitext(text))
    return paragraphs


def detokenize_wikitext(text: str) -> str:
    for a, b in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" ,", ","), (" .", "."),
                 (" ;", ";"), (" :", ":"), (" 's", "'s"), (" n't", "n't"), ("( ", "("), (" )", ")")):
        text = text.replace(a, b)
    return text
