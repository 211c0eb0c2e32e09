"""Typos on the command line answered in one line, before Hydra: `target=rtee` would print Hydra's
28-line list of options and search path; here it says "no target 'rtee' (did you mean rte?)"."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Sequence

CONF = Path(__file__).resolve().parent / "conf"


def group_options(group: str, conf: Path = CONF) -> list[str] | None:
    """The options of a config group (its folder's YAML files), or None if it is not a group."""
    folder = conf / group
    if not folder.is_dir():
        return None
    return sorted(p.stem for p in folder.glob("*.yaml"))


def unknown_group_choice(overrides: Sequence[str], conf: Path = CONF) -> str | None:
    """The error line for the first `group=option` naming an option the group lacks, else None.
    Values Hydra resolves itself (comma sweeps, lists, interpolations, user search paths) are checked
    option by option; anything not a plain name is left to Hydra."""
    for override in overrides:
        if "=" not in override or override.startswith(("hydra", "~")):
            continue
        key, value = override.lstrip("+").split("=", 1)
        options = group_options(key, conf) if "." not in key else None
        if options is None or not value or any(c in value for c in "[]${}()"):
            continue
        for choice in value.split(","):   # a sweep over options: each must exist
            if choice and choice not in options:
                near = difflib.get_close_matches(choice, options, n=3)
                hint = f" (did you mean {', '.join(near)}?)" if near else f"; options: {', '.join(options)}"
                return f"error: {key}={value}: no {key} '{choice}'{hint}"
    return None
