"""One line per log message under Hydra, and none that says nothing about the trial.

`import lightning` gives its `lightning` logger a console handler of its own and lets records
propagate too, so under Hydra's root handlers every Lightning INFO line came out twice. Lightning
also prints a "try litlogger" tip each time a Trainer is built. Every trial also drew the same
library notes: transformers' load report of the fresh head (every trial puts one on the encoder),
Lightning's "srun is available" hint on a SLURM host, a deprecation inside Lightning, and the
log-interval note for short epochs. Those go; anything else, a real warning included, stays. The
progress bar is not logging and stays as it is."""
from __future__ import annotations

import logging

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


HEAD_PREFIXES = ("classifier.", "score.")   # the task head every stage puts on the encoder


class DropFreshHeadReport(logging.Filter):
    """transformers' LOAD REPORT when the only keys it lists are the new head's (expected, every
    trial); a report naming any other key (a damaged checkpoint) still shows."""
    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if "LOAD REPORT" not in text:
            return True
        keys = [line.split("|")[0].strip() for line in text.splitlines()
                if "|" in line and ("MISSING" in line or "UNEXPECTED" in line or "MISMATCH" in line)]
        return not keys or not all(k.startswith(HEAD_PREFIXES) for k in keys)


NOISE = ("The `srun` command is available on your system but is not used",
         r"`isinstance\(treespec, LeafSpec\)` is deprecated",
         "The number of training batches .* is smaller than the logging interval")


def quiet_library_notes() -> None:
    """Drop the notes every stage would print (NOISE, the fresh head's load report, the litlogger tip);
    also in the child process an isolated stage runs in (memory.run_isolated). Idempotent."""
    import warnings

    for message in NOISE:
        warnings.filterwarnings("ignore", message=message)
    transformers_log = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, DropFreshHeadReport) for f in transformers_log.filters):
        transformers_log.addFilter(DropFreshHeadReport())
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLitLoggerTip) for f in logger.filters):
            logger.addFilter(DropLitLoggerTip())


def one_line_per_message() -> None:
    """Route Lightning's records through the root handlers only (Hydra's console and job log file)
    and drop the litlogger tip. Idempotent: each trial of a sweep calls it again."""
    import lightning  # noqa: F401  (its import adds the handler this removes)

    quiet_library_notes()

    if not logging.getLogger().handlers:  # no Hydra (a notebook, a library user): Lightning's own stays
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's console handlers, not a user's file
                logger.removeHandler(handler)
        logger.propagate = True
