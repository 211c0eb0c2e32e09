"""One line per log message under Hydra.

`import lightning` gives its `lightning` logger a console handler of its own and lets records
propagate too, so under Hydra's root handlers every Lightning INFO line came out twice. Lightning
also prints a "try litlogger" tip each time a Trainer is built. The progress bar is not logging and
stays as it is."""
from __future__ import annotations

import logging

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def one_line_per_message() -> None:
    """Route Lightning's records through the root handlers only (Hydra's console and job log file)
    and drop the litlogger tip. Idempotent: each trial of a sweep calls it again."""
    import lightning  # noqa: F401  (its import adds the handler this removes)

    if not logging.getLogger().handlers:  # no Hydra (a notebook, a library user): Lightning's own stays
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's console handlers, not a user's file
                logger.removeHandler(handler)
        logger.propagate = True
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLitLoggerTip) for f in logger.filters):
            logger.addFilter(DropLitLoggerTip())
