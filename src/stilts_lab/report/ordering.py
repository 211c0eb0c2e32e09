"""Do two transfer matrices order their intermediates alike? E.g. LoRA stages against full fine-tuning
(issue 36), or one encoder against another: `python -m stilts_lab.report ordering A_DIR B_DIR`.

Each side's realised Δ mean per intermediate arm and target (each arm's mean over its cells minus
vanilla's, paired by cell: predict.realised_cells), over the arms both sides ran (matched by their
label, e.g. "cola"). Per target:
- Spearman's rho between the two sides' Δ means, with its exact permutation p (every ordering up to 8
  arms; with 3, p is never below 1/3: this needs 5 or more to say anything);
- a 95% percentile interval of rho from resampling each side's grid cells, the two sides
  independently (their trials are independent: two sweeps), so both matrices' noise is in it;
- P(same best): the share of those resamples in which both sides' best arm is the same one.
Vanilla (Δ = 0 on both sides) is left out: the question is the order of the intermediates.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from stilts_lab.errors import StiltsError
from stilts_lab.report.arms import VANILLA, arm_label
from stilts_lab.report.predict import RESAMPLE_SEED, realised_cells, resampled_means, spearman, spearman_p


def _labelled(cells: pd.DataFrame) -> pd.DataFrame:
    """Per-cell Δ with columns named by arm label, vanilla dropped."""
    keep = [c for c in cells.columns if c[0] != VANILLA]
    return cells[keep].set_axis([arm_label(*c) for c in keep], axis=1)


def ordering_table(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per target both collected trial frames hold (the first model of each side's target)."""
    cells_a, cells_b = realised_cells(a), realised_cells(b)
    by_target_b = {target: frame for (_, target), frame in cells_b.items()}
    rows = []
    for (_, target), frame_a in sorted(cells_a.items()):
        if target not in by_target_b:
            continue
        da, db = _labelled(frame_a), _labelled(by_target_b[target])
        arms = [c for c in da.columns if c in db.columns]
        row = dict(target=target, arms=len(arms), cells_a=len(da), cells_b=len(db), spearman=None, spearman_p=None,
                   spearman_low=None, spearman_high=None, p_same_best=None, best_a="", best_b="")
        if len(arms) >= 2 and len(da) and len(db):
            xa, xb = da[arms].to_numpy(float), db[arms].to_numpy(float)
            ma, mb = xa.mean(axis=0), xb.mean(axis=0)
            row.update(spearman=spearman(ma, mb), spearman_p=spearman_p(ma, mb),
                       best_a=arms[int(np.argmax(ma))], best_b=arms[int(np.argmax(mb))])
            if len(da) >= 2 and len(db) >= 2:
                rng = np.random.default_rng(RESAMPLE_SEED)
                ra, rb = resampled_means(xa, rng), resampled_means(xb, rng)
                rhos = np.array([spearman(x, y) for x, y in zip(ra, rb)], dtype=float)
                rhos = rhos[np.isfinite(rhos)]
                if len(rhos):
                    row.update(spearman_low=float(np.percentile(rhos, 2.5)), spearman_high=float(np.percentile(rhos, 97.5)))
                row["p_same_best"] = float((ra.argmax(axis=1) == rb.argmax(axis=1)).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def ordering_markdown(table: pd.DataFrame, label_a: str, label_b: str) -> str:
    def num(x, fmt="{:+.3f}"):
        return "n/a" if x is None or pd.isna(x) else fmt.format(x)
    lines = [f"| target | arms | cells ({label_a} / {label_b}) | Spearman ρ | exact p | ρ 95% interval | "
             f"P(same best) | best ({label_a}) | best ({label_b}) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        interval = ("n/a" if r["spearman_low"] is None or pd.isna(r["spearman_low"])
                    else f"[{r['spearman_low']:+.2f}, {r['spearman_high']:+.2f}]")
        lines.append(f"| {r['target']} | {r['arms']} | {r['cells_a']} / {r['cells_b']} | {num(r['spearman'])} | "
                     f"{num(r['spearman_p'], '{:.3f}')} | {interval} | {num(r['p_same_best'], '{:.2f}')} | "
                     f"{r['best_a']} | {r['best_b']} |")
    return "\n".join(lines)


def ordering_main(dir_a: Path, dir_b: Sequence[Path] | Path, labels: tuple[str, str], out: Path | None) -> pd.DataFrame:
    from stilts_lab.report.collect import collect_trials
    frames = []
    for d in (dir_a, dir_b):
        df = collect_trials([Path(d)])
        if df.empty:
            raise StiltsError(f"no metrics.json or results.csv found under {d}")
        frames.append(df)
    table = ordering_table(*frames)
    if table.empty:
        raise StiltsError(f"{dir_a} and {dir_b} share no target with vanilla and an intermediate arm")
    print(ordering_markdown(table, *labels))
    if out is not None:
        table.to_csv(out, index=False)
        print(f"wrote {out}")
    return table
