"""Ranking candidate intermediate tasks for a target before training any of them (issue 37).

Rankers that compare the candidate's data with the target's, both read as a trial reads them:
- TextEmb (Vu et al. 2020; Poth et al. 2021's SEmb/TextEmb): the cosine similarity of the two
  datasets' mean sentence embeddings under the plain encoder (mean-pooled last layer, features.encode),
  over a seeded draw of at most --embed-examples rows of each: a dataset's mean embedding settles within
  a few hundred rows, and the draw keeps 10 candidates under a minute on 2 cores;
- vocabulary overlap: the share of the target's token occurrences whose token the candidate's data also
  holds (the tokenizer's ids, so subword units; 1 = every target token seen).
Both are "higher = predicted to transfer better", and --out writes them in transfer_estimates.csv's
format, so the report scores them against the realised gains like LogME and H-score.
With --with-checkpoints, each candidate's intermediate checkpoint is trained (or found in the cache)
and the checkpoint-based estimators join the table (transfer/estimate.py: LogME, H-score, kNN), with
the plain encoder ("none") as a candidate of its own: on it, a candidate that scores lower is
predicted to hurt. On the plain encoder alone they give every candidate the same score, which is why
they need the training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from stilts_lab.errors import StiltsError

EMBED_EXAMPLES = 100


@dataclass
class TaskData:
    name: str
    mean_embedding: np.ndarray | None
    token_counts: np.ndarray        # occurrences per token id
    seconds: dict                   # what each ranker's inputs cost


def _token_counts(dm, vocab_size: int) -> np.ndarray:
    ids = []
    for row in dm.train_set["input_ids"]:
        ids.extend(np.ravel(np.concatenate([np.ravel(r) for r in row]) if isinstance(row[0], list) else row))
    special = np.asarray(sorted(set(dm.tokenizer.all_special_ids)), dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids[~np.isin(ids, special)]
    return np.bincount(ids, minlength=vocab_size)


def read_task(name: str, role: str, cfg, tokenizer, encoder, *, max_examples: int, embed_examples: int) -> TaskData:
    """A task's training split as a trial reads it (train_size subset included), capped as the
    estimates cap it (features.target_data), then its token counts and mean embedding. `role`: the
    config block the task is in (target or intermediate)."""
    from omegaconf import OmegaConf

    from stilts_lab.checkpoints import abspath
    from stilts_lab.transfer.features import encode, target_data
    task = OmegaConf.to_container(cfg[role], resolve=True)
    realfake = None
    if task.get("format") == "realfake":
        realfake = built_realfake(cfg, role)
    kwargs = dict(data_dir=abspath(cfg.paths.data_dir), cache_dir=abspath(cfg.paths.cache_dir),
                  split_seed=int(cfg.data.split_seed))
    t0 = time.perf_counter()
    dm = target_data(task, tokenizer, max_examples=max_examples, realfake_file=realfake, **kwargs)
    counts = _token_counts(dm, len(tokenizer))
    vocab_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    small = target_data(task, tokenizer, max_examples=embed_examples, realfake_file=realfake, **kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = encode(small, encoder, desc=f"embedding {name}")
    mean = feats.embeddings.float().mean(0).numpy()
    return TaskData(name, mean, counts, {"TextEmb": time.perf_counter() - t0 + vocab_seconds,
                                         "VocabOverlap": vocab_seconds})


def built_realfake(cfg, role: str = "intermediate") -> Path:
    """A real-fake candidate's cached build, never built here (minutes to an hour): else an error that
    names the command that builds it."""
    from stilts_lab.checkpoints import abspath
    from stilts_lab.synth.realfake import EXAMPLES_FILE, key_from_config
    path = Path(abspath(cfg.paths.cache_dir)) / "realfake" / key_from_config(cfg, role) / EXAMPLES_FILE
    if not path.is_file():
        task = cfg[role]
        raise StiltsError(f"{task.name}: its real-fake set is not built; build it first with "
                          f"`python -m stilts_lab.synth intermediate={task.name} "
                          f"intermediate.train_size={task.train_size}` (or leave it out)")
    return path


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def vocabulary_overlap(candidate: np.ndarray, target: np.ndarray) -> float:
    return float(target[candidate > 0].sum() / max(1, target.sum()))


def rank(target: str, candidates: Sequence[str], overrides: Sequence[str] = (), *,
         max_examples: int = 1000, embed_examples: int = EMBED_EXAMPLES,
         with_checkpoints: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """(one row per (candidate, ranker) in transfer_estimates.csv's columns, notes on candidates left out).
    with_checkpoints: also train (or reuse) each ranked candidate's intermediate checkpoint and add the
    checkpoint-based estimators' rows, the plain encoder's among them."""
    from stilts_lab.compose import compose_config
    from stilts_lab.models.encoder import load_tokenizer, resolve_pretrained, resolve_tokenizer
    from stilts_lab.transfer.features import load_encoder

    base = compose_config([*overrides, f"target={target}"])
    tokenizer = load_tokenizer(resolve_tokenizer(base.model))
    encoder = load_encoder(resolve_pretrained(base.model))
    goal = read_task(target, "target", base, tokenizer, encoder, max_examples=max_examples, embed_examples=embed_examples)
    rows, notes = [], []
    for name in candidates:
        cfg = compose_config([*overrides, f"target={target}", f"intermediate={name}"])
        try:
            data = read_task(name, "intermediate", cfg, tokenizer, encoder, max_examples=max_examples, embed_examples=embed_examples)
        except StiltsError as e:
            notes.append(f"left out: {e}")
            continue
        for ranker, value in (("TextEmb", cosine(data.mean_embedding, goal.mean_embedding)),
                              ("VocabOverlap", vocabulary_overlap(data.token_counts, goal.token_counts))):
            rows.append({"intermediate": name, "intermediate_seed": None, "target": target, "estimator": ranker,
                         "score": value, "seconds": round(data.seconds[ranker] + goal.seconds[ranker], 3),
                         "model": str(base.model.name), "checkpoint_key": None})
    df = pd.DataFrame(rows)
    ranked = list(dict.fromkeys(df["intermediate"])) if not df.empty else []
    if with_checkpoints and ranked:
        df = pd.concat([df, checkpoint_rows(target, ranked, overrides, str(base.model.name), max_examples)],
                       ignore_index=True)
    return df, notes


def checkpoint_rows(target: str, candidates: Sequence[str], overrides: Sequence[str], model: str,
                    max_examples: int) -> pd.DataFrame:
    """transfer estimate's rows for the plain encoder and each candidate's checkpoint (trained here if
    not cached: minutes each on a CPU); `seconds` is the estimate's own cost, not the training's."""
    from stilts_lab.transfer import plan as plans
    from stilts_lab.transfer.estimate import estimate
    plan = plans.from_overrides([*overrides, f"target={target}", f"intermediate={','.join(candidates)}"])
    return estimate(plan, model=model, max_examples=max_examples)


def ranking_table(df: pd.DataFrame) -> str:
    """rank, candidate, each ranker's score and cost (seconds); ranked by TextEmb, ties by vocabulary
    overlap; the plain encoder ("none", scored by the checkpoint-based estimators only) last."""
    wide = df.pivot_table(index="intermediate", columns="estimator", values=["score", "seconds"], dropna=False)
    rankers = [r for r in ("TextEmb", "VocabOverlap", "LogME", "HScore", "kNN") if ("score", r) in wide.columns]
    order = wide.sort_values([("score", "TextEmb"), ("score", "VocabOverlap")], ascending=False, na_position="last")
    lines = ["| rank | candidate | " + " | ".join(f"{r} | cost s" for r in rankers) + " |",
             "|---|---|" + "---|---|" * len(rankers)]

    def cell(value, digits):
        return "-" if pd.isna(value) else f"{value:.{digits}f}"
    for i, (name, r) in enumerate(order.iterrows(), 1):
        scored = " | ".join(f"{cell(r[('score', k)], 4)} | {cell(r[('seconds', k)], 1)}" for k in rankers)
        lines.append(f"| {i if name != 'none' else '-'} | {name} | {scored} |")
    return "\n".join(lines)
