"""User-facing errors: one clear message, no traceback, non-zero exit."""


class StiltsError(Exception):
    """A problem with the user's input (config, data, environment) rather than a bug."""


class DataError(StiltsError):
    """A data file is missing or malformed; the message names the file and line."""


class ConfigError(StiltsError):
    """A config key has an impossible or unknown value; the message names the key."""
