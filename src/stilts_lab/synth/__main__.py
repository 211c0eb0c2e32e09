"""Build (or find in the cache) the real-fake intermediate task:
    python -m stilts_lab.synth intermediate.train_size=2000
The task is always `intermediate=realfake`; other overrides (generator=..., intermediate.seed=...,
paths.cache_dir=...) work as for the trainer, which builds the same key on first use."""
from __future__ import annotations

import json
import sys

import hydra

from stilts_lab.errors import StiltsError


@hydra.main(version_base="1.3", config_path="../../../conf", config_name="config")
def main(cfg) -> None:
    from stilts_lab.synth.realfake import PROVENANCE_FILE, build_from_config

    try:
        path = build_from_config(cfg)
    except StiltsError as e:  # the user's input, not a bug: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    counts = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))["counts"]
    print(path)
    print(", ".join(f"{name}: {value}" for name, value in counts.items()))


if __name__ == "__main__":
    # This entry point builds one task only, so select it unless the command line already did.
    if not any(arg.lstrip("+~").startswith("intermediate=") for arg in sys.argv[1:]):
        sys.argv.append("intermediate=realfake")
    main()
