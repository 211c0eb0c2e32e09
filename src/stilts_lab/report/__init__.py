"""Report over finished sweeps: results.csv, summary.md, violin plots, factor plots.

    python -m stilts_lab.report multirun/2026-01-01 [more dirs] [--out DIR] [--factor intermediate.train_size]

Every metrics.json found (recursively) under the given directories is one trial (collect.py).
Trials of one (model, target) are grouped into arms: one intermediate task, with every setting
that differs apart from the grid's own hyperparameters and seed (arms.py); the vanilla arm is
intermediate "none". Diverged trials stay in every statistic: instability is the paper's point.
Failed trials have no score: they are counted and shown, never averaged. stats.py holds the
statistics, tables.py what goes into them, plots.py and markdown.py the output, write.py the
whole report and cli.py the command line.
"""
from stilts_lab.report.cli import main
from stilts_lab.report.collect import collect_trials
from stilts_lab.report.tables import arm_table, comparison_table, factor_table
from stilts_lab.report.write import write_report

__all__ = ["arm_table", "collect_trials", "comparison_table", "factor_table", "main", "write_report"]
