"""Run a plan: encode each target under each starting point, score, and write the tidy table."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from stilts_lab.models.encoder import load_tokenizer
from stilts_lab.transfer.estimators import score
from stilts_lab.transfer.features import encode, load_encoder, target_data
from stilts_lab.transfer.plan import Plan

# The format report/predict.py reads; extra columns follow these.
COLUMNS = ["intermediate", "intermediate_seed", "target", "estimator", "score", "seconds"]
EXTRA = ["encode_seconds", "n_examples", "n_rows", "checkpoint"]
OUT_FILE = "transfer_estimates.csv"


def estimate(plan: Plan, *, max_examples: int = 1000, batch_size: int = 32) -> pd.DataFrame:
    tokenizer = load_tokenizer(plan.tokenizer_source)
    data = {name: target_data(task, tokenizer, data_dir=plan.data_dir, cache_dir=plan.cache_dir,
                              split_seed=plan.split_seed, max_examples=max_examples)
            for name, task in plan.targets.items()}
    rows = []
    for start in plan.starts:
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
    cells = df.drop_duplicates(["intermediate", "intermediate_seed", "target"])
    spent = float(cells["encode_seconds"].sum() + (df["seconds"] - df["encode_seconds"]).sum())
    lines = [f"estimating: {spent:.1f} s for {len(cells)} (start, target) cells"]
    if plan.trials:
        lines.append(f"the sweep's {plan.trials} trials: {plan.trial_seconds:.1f} s of target-stage training "
                     f"(fit_seconds, else train_seconds), {plan.trial_seconds / max(spent, 1e-9):.1f}x the estimate")
    else:
        lines.append("no target trial has run yet: nothing to compare against")
    return lines
