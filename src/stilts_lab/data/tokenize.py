"""Tokenize canonical examples once and cache the result under an explicit fingerprint.

No padding here: every example keeps its own length, and batches are padded on the fly."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when the encoding below changes


def tokenizer_fingerprint(tokenizer) -> str:
    """Content, not name: two folders holding the same tokenizer share a cache entry."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{body}".encode()).hexdigest()[:16]


def fingerprint(*, tokenizer_fp: str, max_length: int, kind: str, task_def: dict, source_parts: list[str]) -> str:
    payload = json.dumps({"v": CACHE_VERSION, "tok": tokenizer_fp, "max_length": max_length, "kind": kind,
                          "task": task_def, "sources": source_parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def encode(examples: list[dict], tokenizer, *, kind: str, max_length: int) -> list[dict]:
    """-> [{"input_ids": [...] (or [[...] per choice]), "token_type_ids"?: same shape, "label": ...}]"""
    if kind == "multiple_choice":
        n = len(examples[0]["choices"]) if examples else 0
        firsts = [c[0] for ex in examples for c in ex["choices"]]
        seconds = [c[1] for ex in examples for c in ex["choices"]]
        enc = _tokenize(tokenizer, firsts, seconds, max_length)
        return [{key: enc[key][i * n:(i + 1) * n] for key in enc} | {"label": ex["label"]}
                for i, ex in enumerate(examples)]
    firsts = [ex["segments"][0] for ex in examples]
    seconds = [ex["segments"][1] if len(ex["segments"]) > 1 else None for ex in examples]
    enc = _tokenize(tokenizer, firsts, seconds, max_length)
    return [{key: enc[key][i] for key in enc} | {"label": ex["label"]} for i, ex in enumerate(examples)]


def _tokenize(tokenizer, firsts, seconds, max_length):
    pairs = any(s is not None for s in seconds)
    if pairs:  # a pair task with some single segments (hellaswag_p): empty second segment
        seconds = [s if s is not None else "" for s in seconds]
    enc = tokenizer(firsts, seconds if pairs else None, truncation=True, max_length=max_length,
                    padding=False, return_attention_mask=False)
    keep = ["input_ids"] + (["token_type_ids"] if "token_type_ids" in enc else [])
    return {k: enc[k] for k in keep}


def encode_cached(examples, tokenizer, *, kind, max_length, key: str, cache_dir: Path | None) -> list[dict]:
    if cache_dir is None:
        return encode(examples, tokenizer, kind=kind, max_length=max_length)
    path = Path(cache_dir) / "tokenized" / f"{key}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            if len(cached) == len(examples):
                return cached
        except Exception as e:  # a damaged cache file is rebuilt, never trusted
            log.warning("ignoring unreadable tokenization cache %s (%s)", path, e)
    encoded = encode(examples, tokenizer, kind=kind, max_length=max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(encoded, tmp)
    os.replace(tmp, path)
    return encoded
