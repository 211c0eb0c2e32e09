"""User-facing errors: one clear message, no traceback, non-zero exit."""


class StiltsError(Exception):
    """A problem with the user's input (config, data, environment) rather than a bug."""


class DataError(StiltsError):
    """A data file is missing or malformed; the message names the file and line."""


class ConfigError(StiltsError):
    """A config key has an impossible or unknown value; the message names the key."""


class DivergedError(StiltsError):
    """A stage's training went non-finite; the message names the stage, what was (not) kept, and
    what to change. Trials that need a diverged intermediate checkpoint fail with it."""
