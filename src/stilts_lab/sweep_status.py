"""A sweep's exit code tells the truth. Trials fail one by one (each records status failed and its
error in its metrics.json) while the others run on; when all have run, this Hydra callback counts
the trials of this command that failed, says where their errors are, and exits non-zero."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from stilts_lab.results import metrics_files, read_metrics


def trials_of_this_command(sweep_dir: Path, run_id: str, max_depth: int = 3) -> list[tuple[Path, dict]]:
    """metrics.json files under the sweep dir written by this command (same run id): a resumed
    sweep's older failures that this command did not re-run are not its failures."""
    found = []
    for path in metrics_files(sweep_dir, max_depth):
        metrics = read_metrics(path)
        if isinstance(metrics, dict) and metrics.get("run_id") == run_id:
            found.append((path, metrics))
    return found


class SweepExitCode(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        run_id = os.environ.get("STILTS_RUN_ID")
        if not run_id:  # no trial ran stilts_lab's pipeline (e.g. the real-fake builder's sweep)
            return
        trials = trials_of_this_command(Path(config.hydra.sweep.dir), run_id)
        failed = [(path, m) for path, m in trials if m.get("status") == "failed"]
        if not failed:
            return
        print(f"error: {len(failed)} of the {len(trials)} trials this command ran failed; each error is in "
              f"its metrics.json (\"error\") and the trial's log beside it:", file=sys.stderr)
        for path, m in failed:
            print(f"  {path}: {m.get('error')}", file=sys.stderr)
        sys.exit(1)
