"""Which trials form one arm, and which trials of two arms are a pair.

A grid's trials differ in the grid's own hyperparameters and seed (GRID): those are the samples of
one arm. Any other setting that differs between trials of one (model, target) splits them into
arms: an ablation's levels (intermediate.train_size, max_steps), target.eval_size or
data.split_seed (another dev subset), the generator of the real-fake fakes, the intermediate
stage's rate. Pooling such trials would mix different experiments, and pairing them would compare
scores on different dev subsets.

Settings of the intermediate stage (intermediate.*, generator.*) only concern trials that have one:
vanilla's intermediate.train_size or generator never split it. The arm each intermediate arm is
compared against is the vanilla arm with the same shared settings; none found, no comparison.
"""
from __future__ import annotations

import json
import math
from typing import Iterable

import pandas as pd

from stilts_lab.identity import NEVER_CHANGES_RESULT

VANILLA = "none"
# The grid's own hyperparameters (paper_grid, small_grid): the cell a trial fills in its arm.
GRID = ("config.seed", "config.optim.lr", "config.optim.warmup_ratio", "config.data.batch_size")
# Settings that tell no arms apart: those that never change a result (one list, identity.py), and
# defaults already resolved into the settings that do (model.lr feeds optim.lr and intermediate.lr);
# the task names are already the section and arm, and the intermediate seed is pooled (below).
NOT_SETTINGS = tuple(f"config.{key}" for key in NEVER_CHANGES_RESULT) + (
    "config.model.lr", "config.model.batch_size", "config.model.max_epochs",
    "config.model.grid_lrs", "config.model.name", "config.target.name",
    "config.intermediate.name", "config.intermediate.seed")
# The intermediate checkpoint's seed (which also seeds a real-fake build) is a random draw like the
# grid's seed, not another experiment: an arm pools its seeds, and stats.py resamples them as a level.
INTERMEDIATE_SEED = "config.intermediate.seed"
# metrics.json's hashes of the data files a trial read ({"target.train": sha256, ...}), if recorded.
DATA_FILES = "data_files"
INTERMEDIATE_SIDE = ("config.intermediate.", "config.generator.", f"{DATA_FILES}.intermediate.")


def intermediate_order(names: Iterable[str]) -> list[str]:
    """Vanilla first, then the intermediate tasks alphabetically."""
    names = set(names)
    return ([VANILLA] if VANILLA in names else []) + sorted(names - {VANILLA})


def value_label(v) -> str:
    """One spelling per value: 500 and 500.0 (a column pandas widened to float) are one level."""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True, default=str, separators=(",", ":"))
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def value_sort_key(label: str):
    """Numbers numerically, then strings, "null" last."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (2 if label == "null" else 1, 0.0, label)


def _setting_columns(df: pd.DataFrame, exclude: Iterable[str]) -> list[str]:
    skip = set(GRID) | set(exclude)
    return [c for c in df.columns if c.startswith(("config.", f"{DATA_FILES}.")) and c not in skip
            and not c.startswith(NOT_SETTINGS)]


def applies(column: str, trials: pd.DataFrame) -> pd.Series:
    """Whether a setting concerns each trial: the intermediate stage's only where there is one,
    the generator's only where that stage is built by it (real-fake)."""
    if column.startswith("config.generator."):
        fmt = trials.get("config.intermediate.format", pd.Series(None, index=trials.index))
        return (trials["intermediate"] != VANILLA) & (fmt == "realfake")
    if column.startswith(INTERMEDIATE_SIDE):
        return trials["intermediate"] != VANILLA
    return pd.Series(True, index=trials.index)


def _varying(labels: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if labels[c].dropna().nunique() > 1 or
            (labels[c].notna().any() and labels[c].isna().any())]


def assign_arms(df: pd.DataFrame, exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Adds, per trial: `intermediate_seed` (its checkpoint's seed, a pooled level; None for
    vanilla), `settings` (the differing settings of its arm, "key=value, ..."), `arm`
    (its key), `arm_sort` (its place among arms of the same intermediate task), `vanilla_arm` (the
    key of the vanilla arm it is compared with) and `cell` (its grid cell). `exclude` leaves
    settings out of the key (a --factor's levels are points on one line, not arms)."""
    df = df.copy()
    for name in ("settings", "arm", "arm_sort", "vanilla_arm", "cell"):
        df[name] = pd.Series("", index=df.index, dtype=object)
    if df.empty:
        return df
    columns = _setting_columns(df, exclude)
    for _, section in df.groupby(["model", "target"], sort=False, dropna=False):
        # None where a setting does not concern a trial, so it neither splits nor shows.
        labels = pd.DataFrame({c: section[c].map(value_label).where(applies(c, section))
                               for c in columns}, index=section.index)
        shared = _varying(labels, [c for c in columns if not c.startswith(INTERMEDIATE_SIDE)])
        # an intermediate task's own settings split only its trials (realfake's num_fakes does not
        # make hellaswag_p another arm)
        own = {name: _varying(labels.loc[trials.index], [c for c in columns if c.startswith(INTERMEDIATE_SIDE)])
               for name, trials in section.groupby("intermediate", dropna=False)}
        for i in section.index:
            name = section.at[i, "intermediate"]
            shared_values = tuple((c, labels.at[i, c]) for c in shared)
            own_values = tuple((c, labels.at[i, c]) for c in own.get(name, []))
            df.at[i, "settings"] = ", ".join(f"{c.removeprefix('config.')}={v}"
                                             for c, v in own_values + shared_values)
            df.at[i, "arm"] = repr((name, own_values, shared_values))
            df.at[i, "arm_sort"] = tuple(value_sort_key(v) for _, v in own_values + shared_values)
            df.at[i, "vanilla_arm"] = repr((VANILLA, (), shared_values))
    # None for vanilla: it has no intermediate checkpoint, so its trials are one group.
    seeds = df.get(INTERMEDIATE_SEED, pd.Series(None, index=df.index, dtype=object))
    df["intermediate_seed"] = seeds.map(value_label).where(df["intermediate"] != VANILLA)
    grid = df.reindex(columns=list(GRID))
    df["cell"] = [repr(tuple(value_label(v) for v in row)) for row in grid.itertuples(index=False)]
    return df


def arm_order(section: pd.DataFrame) -> list[str]:
    """Arm keys of a section: vanilla first, by intermediate, then by settings (numbers numerically)."""
    first = section.drop_duplicates("arm")
    rank = {name: i for i, name in enumerate(intermediate_order(first["intermediate"]))}
    return [arm for *_, arm in sorted((rank[r.intermediate], r.arm_sort, r.arm) for r in first.itertuples())]


def arm_label(intermediate: str, settings: str = "") -> str:
    """How an arm is named in tables and plots: "vanilla" for no intermediate stage, then its settings."""
    name = "vanilla" if intermediate == VANILLA else str(intermediate)
    return f"{name} ({settings})" if settings else name
