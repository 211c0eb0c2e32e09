"""Correctness debts, each with an oracle independent of the code under test:

- the report scores each arm by the estimates of exactly its own checkpoints, per model;
- the generator's `dtype: auto` asks devices.native_bf16, the project's one bf16 check;
- the estimates see a seeded random subset of a target's training split, not its first rows."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from stilts_lab import devices
from stilts_lab.report import collect_trials, comparison_table
from stilts_lab.report.predict import candidates, read_estimates
from stilts_lab.results import write_json_atomic
from tests.conftest import compose_config
from tests.test_report import CELLS, VANILLA, write_trial

# --- estimates are joined to arms by model and checkpoint key ------------------------------------------


def trial(path: Path, intermediate: str, seed: int, lr: float, best: float, *, model: str = "minilm_l6",
          key: str | None = None, intermediate_size: int | None = None, intermediate_seed: int | None = None) -> None:
    """write_trial's metrics.json, for `model`, started from the checkpoint cached under `key`."""
    config = {"model": {"name": model}}
    if intermediate_seed is not None:
        config["intermediate"] = {"seed": intermediate_seed}
    metrics = write_trial(path, intermediate, seed, lr, best, intermediate_size=intermediate_size, config=config)
    metrics["model"] = model
    metrics["intermediate_checkpoint"] = (None if key is None else
                                          {"key": key, "path": f"/cache/intermediate/{intermediate}-{key}"})
    write_json_atomic(path / "metrics.json", metrics)


def estimates_csv(folder: Path, rows: list[tuple]) -> None:
    """transfer_estimates.csv as `python -m stilts_lab.transfer estimate` writes it now: rows of
    (model, intermediate, intermediate_seed, checkpoint_key, estimator, score), all on rte."""
    pd.DataFrame([dict(intermediate=i, intermediate_seed=s, target="rte", estimator=e, score=v, seconds=1.0,
                       encode_seconds=0.5, n_examples=24, n_rows=24, checkpoint=f"/cache/intermediate/{i}-{k}",
                       model=m, checkpoint_key=k) for m, i, s, k, e, v in rows]).to_csv(
        folder / "transfer_estimates.csv", index=False)


def scored_candidates(dirs: list[Path]) -> dict:
    """{(model, intermediate, settings, estimator): score}, computed as write_report computes it."""
    df = collect_trials(dirs)
    points = candidates(comparison_table(df), read_estimates(dirs))
    return {(r.model, r.intermediate, r.settings, r.estimator): r.score for r in points.itertuples()}


def test_ablation_arms_get_the_scores_of_their_own_checkpoints(tmp_path):
    """Two real-fake arms that differ only in intermediate.train_size: the 250 arm trained one
    checkpoint, the 500 arm two (intermediate seeds 1 and 2). Each arm's score is the mean over its
    own checkpoints: 0.2 and (0.6 + 0.8) / 2 = 0.7, not one pooled mean over all three."""
    root = tmp_path / "sweep"
    for n, ((seed, lr), v) in enumerate(zip(CELLS, VANILLA)):
        trial(root / "none" / str(n), "none", seed, lr, v)
        trial(root / "rf250" / str(n), "realfake", seed, lr, v + 0.01, key="k250", intermediate_size=250,
              intermediate_seed=1)
        for s, key in ((1, "k500a"), (2, "k500b")):
            trial(root / f"rf500-{s}" / str(n), "realfake", seed, lr, v + 0.02 * s, key=key,
                  intermediate_size=500, intermediate_seed=s)
    estimates_csv(root, [("minilm_l6", "none", None, None, "LogME", 0.1),
                         ("minilm_l6", "realfake", 1, "k250", "LogME", 0.2),
                         ("minilm_l6", "realfake", 1, "k500a", "LogME", 0.6),
                         ("minilm_l6", "realfake", 2, "k500b", "LogME", 0.8)])
    scores = scored_candidates([root])
    assert scores == pytest.approx({("minilm_l6", "none", "", "LogME"): 0.1,
                                    ("minilm_l6", "realfake", "intermediate.train_size=250", "LogME"): 0.2,
                                    ("minilm_l6", "realfake", "intermediate.train_size=500", "LogME"): 0.7})


def test_a_report_over_two_models_keeps_their_estimates_apart(tmp_path):
    """Two sweeps, one per model, each with its own estimates: every candidate of a model is scored by
    that model's estimates only (the plain encoder included), never by the mean over both."""
    dirs = []
    own = {"minilm_l6": {"none": 0.1, "realfake": 0.9}, "roberta_base": {"none": 0.5, "realfake": 0.3}}
    for model, scores in own.items():
        root = tmp_path / model
        for n, ((seed, lr), v) in enumerate(zip(CELLS, VANILLA)):
            trial(root / "none" / str(n), "none", seed, lr, v, model=model)
            trial(root / "realfake" / str(n), "realfake", seed, lr, v + 0.05, model=model, key=f"rf-{model}",
                  intermediate_seed=1)
        estimates_csv(root, [(model, "none", None, None, "LogME", scores["none"]),
                             (model, "realfake", 1, f"rf-{model}", "LogME", scores["realfake"])])
        dirs.append(root)
    assert scored_candidates(dirs) == pytest.approx(
        {(m, i, "", "LogME"): v for m, scores in own.items() for i, v in scores.items()})


def test_an_estimates_csv_without_model_or_key_is_joined_by_name(tmp_path):
    """An older CSV (docs/verdict_matrix's): no model, no checkpoint key. Each arm is scored by the
    mean over the rows of its intermediate's name, as before."""
    root = tmp_path / "sweep"
    for n, ((seed, lr), v) in enumerate(zip(CELLS, VANILLA)):
        trial(root / "none" / str(n), "none", seed, lr, v)
        for s in (1, 2):
            trial(root / f"rf-{s}" / str(n), "realfake", seed, lr, v + 0.02 * s, key=f"k{s}", intermediate_seed=s)
    pd.DataFrame([dict(intermediate=i, intermediate_seed=s, target="rte", estimator="LogME", score=v, seconds=1.0)
                  for i, s, v in (("none", None, 0.1), ("realfake", 1, 0.4), ("realfake", 2, 0.6))]).to_csv(
        root / "transfer_estimates.csv", index=False)
    assert scored_candidates([root]) == pytest.approx({("minilm_l6", "none", "", "LogME"): 0.1,
                                                       ("minilm_l6", "realfake", "", "LogME"): 0.5})


# --- one bf16 check: the generator asks devices.py ------------------------------------------------------

@pytest.mark.parametrize("flags, native", [
    ({"avx2", "avx512f"}, False),                 # AVX512 without BF16: oneDNN says yes, the hardware emulates
    ({"avx2", "avx512f", "avx512_bf16"}, True),
    ({"avx2", "amx_bf16"}, True),
    ({"avx2"}, False),
])
def test_the_generators_auto_dtype_follows_the_one_bf16_check(monkeypatch, flags, native):
    """The CPU flags devices.py reads decide both the trainer's precision and the generator's dtype.
    oneDNN's own check is made to answer the opposite, so a generator that asked it would differ."""
    from stilts_lab.synth.generator import resolve_dtype

    monkeypatch.setattr(devices, "_linux_cpu_flags", lambda: set(flags))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: not native, raising=False)
    assert devices.native_bf16() is native
    assert devices.cpu_precision() == ("bf16-mixed" if native else "32-true")
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    # an explicit dtype is what it says, whatever the CPU
    assert resolve_dtype("float32", "cpu") == "float32" and resolve_dtype("bfloat16", "cpu") == "bfloat16"


# --- the estimates' subset of a large target is a seeded random draw ------------------------------------

def _target(data_dir, cache_dir, split_seed: int, max_examples: int):
    from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer
    from stilts_lab.transfer.features import target_data

    cfg = compose_config(["target=rte"], data_dir=data_dir)
    task = OmegaConf.to_container(cfg.target, resolve=True)
    return target_data(task, load_tokenizer(resolve_tokenizer(cfg.model)), data_dir=str(data_dir),
                       cache_dir=str(cache_dir), split_seed=split_seed, max_examples=max_examples)


def _rows(dm) -> list[tuple]:
    return [tuple(ids) for ids in dm.train_set["input_ids"]]


def test_estimates_see_a_seeded_random_subset_of_a_large_target(data_dir, cache_dir):
    """RTE's 2490 training rows, capped at 40: the rows encoded are 40 of the split's own rows, not
    its first 40 lines; the same 40 for one seed, another 40 for another; the lengths the batch
    sampler reads and splits.json's line numbers follow the rows kept."""
    full = _target(data_dir, cache_dir, 0, 10**9)
    n = 40
    assert len(full.train_set) > 10 * n
    first, again, other = (_target(data_dir, cache_dir, seed, n) for seed in (0, 0, 1))
    assert len(first.train_set) == n == len(first.lengths["train"])
    everything = _rows(full)
    position = {row: i for i, row in enumerate(everything)}
    assert set(_rows(first)) <= set(everything)
    assert _rows(first) != everything[:n]
    assert max(position[row] for row in _rows(first)) > 2 * n  # drawn from the whole split, not its head
    assert _rows(first) == _rows(again)
    assert set(_rows(first)) != set(_rows(other))
    assert first.lengths["train"] == [full.lengths["train"][position[row]] for row in _rows(first)]
    assert len(first.splits["train"]["rows"]) == n
    assert first.splits["train"]["rows"] == [full.splits["train"]["rows"][position[row]] for row in _rows(first)]
    assert first.splits["train"]["rows"] != full.splits["train"]["rows"][:n]
