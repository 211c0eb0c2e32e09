"""`python -m stilts_lab.report plan`: size a design from a pilot sweep (power.py holds the formulas)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from stilts_lab.errors import StiltsError
from stilts_lab.report.collect import collect_trials, sections
from stilts_lab.report.power import experiment_components, plan_table


def _cheapest(table, column: str) -> str:
    ok = table[table[f"{column}_ok"]].sort_values(["trials", "checkpoints"])
    if ok.empty:
        return "none in the grid below"
    r = ok.iloc[0]
    return f"{int(r['checkpoints'])} seeds x {int(r['cells'])} cells = {int(r['trials'])} trials"


def print_plan(dirs: Sequence[Path], effect: float, family_size: int | None = None, arms: int | None = None) -> None:
    df = collect_trials([Path(d) for d in dirs])
    if df.empty:
        raise StiltsError(f"no metrics.json (or results.csv) found under {', '.join(str(d) for d in dirs)}")
    experiments = [(model, target, e) for model, target, section in sections(df) for e in experiment_components(section)]
    if not experiments:
        raise StiltsError("no target in these sweeps has both a vanilla arm and an intermediate arm to plan from")
    m = family_size or sum(e["arms"] for *_, e in experiments)
    print(f"Designs detecting Δ = {effect:g} at 80% power, two-sided, after Holm over {m} tests (alpha 0.05 / {m}).")
    print("Columns: detectable Δ with these checkpoints (conditional) / at task level (checkpoints resampled; "
          "needs 3+ seeds). Trials per target: cells x (1 + arms x seeds).")
    for model, target, e in experiments:
        j = arms or e["arms"]
        sd = {k: (e[k] or 0.0) ** 0.5 for k in ("residual", "checkpoint", "cell")}
        print(f"\n## {target} ({model}): pilot {e['cells']} cells x {e['checkpoints']} seeds, {e['arms']} arms; "
              f"sd residual {sd['residual']:.4f}, checkpoint {sd['checkpoint']:.4f}, cell {sd['cell']:.4f}")
        table = plan_table(e["residual"], e["checkpoint"], j, m, effect)
        cells = sorted(set(table["cells"]))
        print("| seeds | " + " | ".join(f"{c} cells" for c in cells) + " |")
        print("|---|" + "---|" * len(cells))
        for k, rows in table.groupby("checkpoints"):
            text = [f"{r.conditional:.4f} / " + ("n/a" if r.task is None or r.task != r.task else f"{r.task:.4f}")
                    for r in rows.itertuples()]
            print(f"| {k} | " + " | ".join(text) + " |")
        print(f"cheapest reaching {effect:g}: these checkpoints: {_cheapest(table, 'conditional')}; "
              f"task level: {_cheapest(table, 'task')}")
