"""Contrasts between two intermediate arms (`--contrast A:B`): the decomposition's questions.

The transfer matrix compares every arm with vanilla; a decomposition asks how arms compare with each
other, e.g. does realfake_swapped (coherence only) transfer as well as realfake (the generator's
fakes)? Reading that off two intervals against vanilla loses the pairing: both arms fill the same
grid cells, so their difference is measured cell by cell. A contrast is A minus B on every target
where both have trials, with the same statistics as the comparisons against vanilla (tables.delta):
Δ mean and Δ max with their intervals (two-level over intermediate seeds), and paired tests over
the cells both filled, each cell's score the mean over the arm's intermediate seeds.

Only arms with the same shared settings are contrasted (as an arm meets only the vanilla arm with its
settings); "vanilla" names the plain encoder.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from stilts_lab.errors import StiltsError
from stilts_lab.report.arms import VANILLA, arm_order
from stilts_lab.report.collect import sections
from stilts_lab.report.tables import MARGIN, delta, experiments

CONTRASTS_FILE = "contrasts.csv"


def parse_contrast(spec: str) -> tuple[str, str]:
    """"A:B" -> (A, B), intermediate task names as metrics.json records them ("vanilla" = none)."""
    names = [n.strip() for n in spec.split(":")]
    if len(names) != 2 or not all(names):
        raise StiltsError(f"--contrast {spec!r}: expected two intermediate names as A:B, e.g. realfake_swapped:realfake")
    a, b = (VANILLA if n == "vanilla" else n for n in names)
    if a == b:
        raise StiltsError(f"--contrast {spec!r}: an arm against itself")
    return a, b


def contrast_table(df: pd.DataFrame, specs: Sequence[str], margin: float = MARGIN) -> pd.DataFrame:
    """One row per (contrast, model, target, pair of arms with the same shared settings):
    a, b (intermediate names), a_settings, b_settings, metric_name and tables.delta's columns.
    `df`: the report's trials, arms assigned."""
    pairs = [parse_contrast(s) for s in specs]
    known = set(df["intermediate"].dropna())
    for spec, (a, b) in zip(specs, pairs):
        missing = [n for n in (a, b) if n not in known]
        if missing:
            raise StiltsError(f"--contrast {spec}: no trials of {', '.join(map(repr, missing))} in these sweeps "
                              f"(intermediates found: {', '.join(sorted(known))})")
    rows = []
    for a_name, b_name in pairs:
        for model, target, section in sections(df):
            scored = section[section["scored"]]
            fits = None
            arms = section.drop_duplicates("arm").set_index("arm")
            order = arm_order(section)
            for a_key in (k for k in order if arms.at[k, "intermediate"] == a_name):
                # B's arms with A's shared settings: those compared with the same vanilla arm
                # (vanilla's own vanilla_arm is itself, so "vanilla" needs no case of its own).
                for b_key in (k for k in order if arms.at[k, "intermediate"] == b_name
                              and arms.at[k, "vanilla_arm"] == arms.at[a_key, "vanilla_arm"]):
                    arm, other = scored[scored["arm"] == a_key], scored[scored["arm"] == b_key]
                    if len(arm) and len(other):
                        fits = fits or experiments(section)
                        rows.append(dict(model=model, target=target, a=a_name, b=b_name,
                                         a_settings=arms.at[a_key, "settings"], b_settings=arms.at[b_key, "settings"],
                                         metric_name=", ".join(sorted(set(section["metric_name"].dropna()))),
                                         **delta(arm, other, fits.get(arms.at[a_key, "vanilla_arm"]), margin)))
    return pd.DataFrame(rows)
