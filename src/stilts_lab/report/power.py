"""Power and planning: the smallest Δ a design detects at 80% power, from a sweep's variance
components, for the report's own tests (inference.compare) after a correction over M tests.

Variance components of one experiment (a target and its shared settings), from its block design:
- residual: the design's pooled residual variance (what is left after cell and column effects);
- checkpoint: between the column effects of one arm's checkpoints, minus what the residual puts
  there (residual / cells), clipped at 0, averaged over the arms with 2+ checkpoints;
- cell: the spread of the cell effects (the pairing removes it; shown to say what pairing saves).

For a design of C cells and K checkpoints per arm against vanilla (one trial per cell):
  conditional: se^2 = residual (1 / (C K) + 1 / C),            df = (C - 1) J K  (J arms)
  task level:  se^2 = conditional + (checkpoint + residual / C) / K,  df = K - 1
and the minimum detectable Δ = (t_{1 - alpha / (2 M)} + t_{0.80}) se (Holm's first step).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stilts_lab.report.inference import ALPHA, MIN_TASK_CHECKPOINTS, minimum_detectable

POWER = 0.80
PLAN_CHECKPOINTS = (2, 3, 5, 8, 10, 20)
PLAN_CELLS = (6, 12, 24, 36, 72, 144)


def components(design, y: np.ndarray, arms: dict) -> dict:
    """{residual, checkpoint, cell, cells} of one experiment's scores `y` (design.fit's input);
    `arms` maps each intermediate arm to its columns in the design."""
    effects, s2 = design.fit(y)
    cells = len(design.cell_index)
    spreads = [np.var(effects[[design.column_index[c] for c in cols]], ddof=1) - s2 / cells
               for cols in arms.values() if len(cols) > 1]
    cell_effects = design.cell_effects(y)
    return dict(residual=float(s2), checkpoint=float(max(0.0, np.mean(spreads))) if spreads else None,
                cell=float(np.var(cell_effects, ddof=1)) if cells > 1 else None, cells=cells)


def conditional_se(residual: float, cells: int, checkpoints: int) -> float:
    return float(np.sqrt(residual * (1 / (cells * checkpoints) + 1 / cells)))


def task_se(residual: float, checkpoint: float, cells: int, checkpoints: int) -> float:
    return float(np.sqrt(conditional_se(residual, cells, checkpoints) ** 2
                         + (checkpoint + residual / cells) / checkpoints))


def detectable(residual: float, checkpoint: float | None, cells: int, checkpoints: int, arms: int,
               family_size: int, alpha: float = ALPHA) -> tuple[float, float | None]:
    """(conditional, task-level) minimum detectable Δ at 80% power after Holm over `family_size` tests;
    task level None below 3 checkpoints or without a checkpoint component."""
    a = alpha / max(1, family_size)
    cond = float(minimum_detectable(conditional_se(residual, cells, checkpoints), (cells - 1) * arms * checkpoints, a, POWER))
    if checkpoint is None or checkpoints < MIN_TASK_CHECKPOINTS:
        return cond, None
    task = float(minimum_detectable(task_se(residual, checkpoint, cells, checkpoints), checkpoints - 1, a, POWER))
    return cond, task


def plan_table(residual: float, checkpoint: float | None, arms: int, family_size: int, effect: float,
               alpha: float = ALPHA) -> pd.DataFrame:
    """Every (checkpoints, cells) design of the grid: both detectable effects, the trials it costs
    (C (1 + J K): vanilla's cells and each arm's checkpoints x cells) and whether it reaches `effect`."""
    rows = []
    for k in PLAN_CHECKPOINTS:
        for c in PLAN_CELLS:
            cond, task = detectable(residual, checkpoint, c, k, arms, family_size, alpha)
            rows.append(dict(checkpoints=k, cells=c, trials=c * (1 + arms * k), conditional=cond, task=task,
                             conditional_ok=cond <= effect, task_ok=task is not None and task <= effect))
    return pd.DataFrame(rows)


def experiment_components(section: pd.DataFrame) -> list[dict]:
    """Per experiment of a (model, target) section (vanilla arm and the arms compared with it):
    its variance components, its arms J and their typical checkpoints K."""
    from stilts_lab.report.arms import VANILLA
    from stilts_lab.report.collect import SCORE
    from stilts_lab.report.tables import fit_experiment, trial_columns
    out = []
    scored = section[section["scored"]]
    for key, trials in scored.groupby("vanilla_arm", sort=False):
        design, _, _ = fit_experiment(trials)
        columns = pd.Series(trial_columns(trials), index=trials.index)
        arms = {arm: list(dict.fromkeys(columns[group.index])) for arm, group in trials.groupby("arm")
                if group["intermediate"].iloc[0] != VANILLA}
        if not arms:
            continue
        parts = components(design, trials[SCORE].to_numpy(float), arms)
        ks = [len(cols) for cols in arms.values()]
        out.append(dict(parts, vanilla_arm=key, arms=len(arms), checkpoints=int(np.median(ks))))
    return out


def power_table(df: pd.DataFrame, family_size: int, alpha: float = ALPHA) -> pd.DataFrame:
    """Per (model, target, experiment): variance components and the minimum detectable Δ at 80%
    power of the report's own tests on the sweep's own design (C cells, K checkpoints)."""
    from stilts_lab.report.collect import sections
    rows = []
    for model, target, section in sections(df):
        for e in experiment_components(section):
            cond, task = detectable(e["residual"], e["checkpoint"], e["cells"], e["checkpoints"], e["arms"],
                                    family_size, alpha)
            rows.append(dict(model=model, target=target, metric_name=", ".join(sorted(set(section["metric_name"].dropna()))),
                             **{k: e[k] for k in ("cells", "checkpoints", "arms", "residual", "checkpoint", "cell")},
                             family_size=family_size, mde_conditional=cond, mde_task=task))
    return pd.DataFrame(rows)
