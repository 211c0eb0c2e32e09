"""python -m stilts_lab [+experiment=NAME] [overrides]   (Hydra; -m for sweeps)"""
from __future__ import annotations

import logging
import os
import sys
import uuid

import hydra
from omegaconf import DictConfig

from stilts_lab.errors import StiltsError

log = logging.getLogger("stilts_lab")


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="conf", config_name="config")  # src/stilts_lab/conf -> conf/
def main(cfg: DictConfig) -> float | None:
    from stilts_lab.pipeline import run  # heavy imports after Hydra has parsed the command line
    from stilts_lab.logging_setup import one_line_per_message
    one_line_per_message()  # after Hydra set up its handlers, before any Trainer logs
    try:
        return run(cfg)["best_dev_metric"]
    except StiltsError as e:
        # The user's input is wrong: one line, no traceback. In a sweep it may concern only some
        # trials (one real-fake size too large for the source text): those fail, the rest run, and
        # the sweep exits non-zero at the end (sweep_status.SweepExitCode).
        log.error("error: %s", e)
        print(f"error: {e}", file=sys.stderr)
        if not _in_sweep():
            sys.exit(1)
        return None
    except Exception:
        if not _in_sweep():
            raise
        # One crashed trial must not end the sweep: its metrics.json says failed (with the error),
        # and running the sweep again re-runs it.
        log.exception("trial failed; the sweep goes on")
        return None


if __name__ == "__main__":
    # A new id for this command, set before Hydra launches anything: sweep workers inherit it, so
    # the trials of one command are told from an earlier one's (sweep_status, pipeline's DIVERGED_SUFFIX).
    os.environ["STILTS_RUN_ID"] = uuid.uuid4().hex[:12]
    main()
