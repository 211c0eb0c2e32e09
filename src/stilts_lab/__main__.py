"""python -m stilts_lab [+experiment=NAME] [overrides]   (Hydra; -m for sweeps)"""
from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from stilts_lab.errors import StiltsError

log = logging.getLogger("stilts_lab")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from stilts_lab.pipeline import run  # heavy imports after Hydra has parsed the command line
    try:
        return run(cfg)["best_dev_metric"]
    except StiltsError as e:
        # The user's input is wrong: one line that says what and where, no traceback.
        log.error("error: %s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
