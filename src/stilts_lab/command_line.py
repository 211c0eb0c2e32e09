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


# `+key=value` adds a key the config lacks. Only these are read by the code although no config file
# sets them; task blocks (target.*, intermediate.*) have their own check (checks.check_config).
READ_WITHOUT_DEFAULT = ("output_dir", "prepare")


def unread_additions(task_overrides: Sequence[str], cfg) -> list[str]:
    """A warning for each `+key=value` that adds a key nothing reads: `optim.lrr=1e-4` is refused by
    Hydra, and its advice (`+optim.lrr=1e-4`) would run the trial with the typo silently ignored."""
    from omegaconf import OmegaConf
    warnings = []
    for override in task_overrides:
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key = override[1:].split("=", 1)[0]
        if group_options(key) is not None or key.startswith(READ_WITHOUT_DEFAULT + ("target.", "intermediate.", "hydra")):
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        siblings = [k for k in (node.keys() if OmegaConf.is_dict(node) else []) if k != leaf]
        near = difflib.get_close_matches(leaf, siblings, n=3)
        hint = f" (did you mean {', '.join(f'{parent}.{n}' if parent else n for n in near)}?)" if near else ""
        warnings.append(f"warning: +{key}: no setting of stilts_lab reads {key}; the run ignores it{hint}")
    return warnings
