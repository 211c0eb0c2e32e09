"""Which local files a task reads: the data files and the files its transforms read (label files),
found for hashing (identity.py) and for loading (tasks.py), with the message when one is missing."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from stilts_lab.data.readers import file_sha256
from stilts_lab.errors import DataError


def task_files(task: Mapping, data_dir: str | Path) -> dict[str, Path]:
    """Every local file a task reads, by role ("files.train", "transforms.attach_label_file.eval", ...):
    what the config hash and the intermediate key hash, so edited data never matches old results."""
    data_dir = Path(data_dir)
    if task.get("format") == "realfake":
        return {f"sources.{i}": data_dir / s for i, s in enumerate(task.get("sources") or [])}
    out = {f"files.{which}": data_dir / rel for which, rel in (task.get("files") or {}).items() if rel}
    for split in ("train", "eval"):
        out.update({f"transforms.{label}.{split}": path for label, path in transform_files(task, split, data_dir)})
    return {label: path for label, path in out.items() if path.is_file()}


def transform_files(task: Mapping, split: str, data_dir: str | Path) -> list[tuple[str, Path]]:
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


def missing_message(task: Mapping, path: Path | None, which: str) -> str:
    hf = task.get("hf_dataset") or {}
    hub = f"{hf.get('path')}" + (f" ({hf.get('name')})" if hf.get("name") else "") if hf else "none named"
    return (f"task '{task.get('name')}': no {which} data"
            + (f": file not found: {path}" if path else "")
            + f". Provide it either way: (1) set STILTS_DATA_DIR (config paths.data_dir) to a folder holding "
            f"{(task.get('files') or {}).get(which, '<the task files>')}, or (2) leave it unset to load the "
            f"Hugging Face dataset {hub} (needs internet).")


def local_path(task: Mapping, data_dir: str, rel: str | None, which: str) -> Path:
    path = Path(data_dir) / rel if rel else None
    if path is None or not path.is_file():
        raise DataError(missing_message(task, path, which))
    return path


def source_hashes(task: Mapping, path: Path, split: str, data_dir: str) -> list[str]:
    """The data file's hash plus those of files its transforms read (SocialIQA's label file), so an
    edited label file never meets a stale tokenization cache."""
    return [file_sha256(path)] + [file_sha256(p) for _, p in transform_files(task, split, data_dir)]
