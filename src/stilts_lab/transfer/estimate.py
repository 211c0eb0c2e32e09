"""Run a plan: encode each target under each starting point, score, and write the tidy table."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from stilts_lab.intermediate_stage import COMPLETE_FILE
from stilts_lab.models.encoder import load_tokenizer
from stilts_lab.transfer.estimators import score
from stilts_lab.transfer.features import encode, load_encoder, target_data
from stilts_lab.transfer.plan import Plan, Start

# The format report/predict.py reads; extra columns follow these. The report joins a row to the arms
# whose trials started from its checkpoint by `model` and `checkpoint_key` (metrics.json's
# intermediate_checkpoint.key); `checkpoint` is the folder (or Hub id) the encoder was loaded from.
COLUMNS = ["intermediate", "intermediate_seed", "target", "estimator", "score", "seconds"]
EXTRA = ["model", "checkpoint_key", "encode_seconds", "n_examples", "n_rows", "checkpoint"]
OUT_FILE = "transfer_estimates.csv"


def checkpoint_key(start: Start) -> str | None:
    """The key an intermediate checkpoint is cached under: its stage record's (COMPLETE_FILE in the
    folder), else its folder's name, <cache>/intermediate/<task>-<key>. None for the plain encoder."""
    if start.intermediate == "none":
        return None
    folder = Path(start.source)
    try:
        key = json.loads((folder / COMPLETE_FILE).read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        key = None
    if not key and folder.name.startswith(f"{start.intermediate}-"):
        key = folder.name.removeprefix(f"{start.intermediate}-")
    return str(key) if key else None


def estimate(plan: Plan, *, model: str | None = None, max_examples: int = 1000, batch_size: int = 32) -> pd.DataFrame:
    """One row per (start, target, estimator). `model`: the model name every start belongs to
    (the plan's configs'), recorded so that a report over several models keeps them apart."""
    tokenizer = load_tokenizer(plan.tokenizer_source)
    data = {name: target_data(task, tokenizer, data_dir=plan.data_dir, cache_dir=plan.cache_dir,
                              split_seed=plan.split_seed, max_examples=max_examples)
            for name, task in plan.targets.items()}
    rows = []
    for start in plan.starts:
        key = checkpoint_key(start)
        encoder = load_encoder(start.source)
        for name, dm in data.items():
            t0 = time.perf_counter()
            feats = encode(dm, encoder, batch_size=batch_size, desc=f"{start.intermediate} -> {name}")
            encode_seconds = time.perf_counter() - t0
            for estimator, (value, fit_seconds) in score(feats).items():
                rows.append({"intermediate": start.intermediate, "intermediate_seed": start.intermediate_seed,
                             "target": name, "estimator": estimator, "score": value,
                             # each row's own cost: the shared encoding plus this estimator's fit
                             "seconds": round(encode_seconds + fit_seconds, 3),
                             "model": model, "checkpoint_key": key,
                             "encode_seconds": round(encode_seconds, 3), "n_examples": feats.n_examples,
                             "n_rows": len(feats.labels), "checkpoint": start.source})
    df = pd.DataFrame(rows, columns=COLUMNS + EXTRA)
    df["intermediate_seed"] = df["intermediate_seed"].astype("Int64")  # empty for the plain encoder
    return df


def write(df: pd.DataFrame, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return out


def cost_lines(df: pd.DataFrame, plan: Plan) -> list[str]:
    """Estimating cost beside the trials' cost: encoding is shared by both estimators of a cell."""
    cells = df.drop_duplicates(["checkpoint", "target"])  # a start is its folder: two arms' checkpoints may share name and seed
    spent = float(cells["encode_seconds"].sum() + (df["seconds"] - df["encode_seconds"]).sum())
    lines = [f"estimating: {spent:.1f} s for {len(cells)} (start, target) cells"]
    if plan.trials:
        lines.append(f"the sweep's {plan.trials} trials: {plan.trial_seconds:.1f} s of target-stage training "
                     f"(fit_seconds, else train_seconds), {plan.trial_seconds / max(spent, 1e-9):.1f}x the estimate")
    else:
        lines.append("no target trial has run yet: nothing to compare against")
    return lines
