"""Build (or find in the cache) the real-fake intermediate task, or audit a set for give-aways:
    python -m stilts_lab.synth intermediate.train_size=2000
    python -m stilts_lab.synth intermediate.fakes=paper intermediate.train_size=2000
    python -m stilts_lab.synth audit PATH [--endings FIELD] [--label FIELD] [--prompt FIELD]
The task is `intermediate=realfake` unless the command line picks another real-fake task
(realfake_paper, realfake_controlled, realfake_swapped); other overrides (generator=..., intermediate.seed=...,
paths.cache_dir=...) work as for the trainer, which builds the same key on first use."""
from __future__ import annotations

import json
import sys

import hydra

from stilts_lab.errors import StiltsError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")  # src/stilts_lab/conf -> conf/
def main(cfg) -> None:
    from stilts_lab.synth.realfake import PROVENANCE_FILE, build_from_config

    from stilts_lab.checks import check_generator

    try:
        check_generator(cfg)  # top_p 0 or temperature 0 would fail deep inside sampling
        path = build_from_config(cfg)
    except StiltsError as e:  # the user's input, not a bug: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    provenance = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    print(path)
    print(", ".join(f"{name}: {value}" for name, value in provenance["counts"].items()))
    if "audit" in provenance:
        from stilts_lab.synth.audit import format_audit
        print(format_audit(provenance["audit"]))


def audit_main(argv: list[str]) -> None:
    """`audit PATH`: the artifact audit of a built set's folder or any multiple-choice jsonl file."""
    import argparse

    from stilts_lab.synth.audit import audit_rows, format_audit, read_set

    parser = argparse.ArgumentParser(prog="python -m stilts_lab.synth audit",
                                     description="Score trivial give-away detectors on a multiple-choice set.")
    parser.add_argument("path", help="a built set's folder (holding examples.jsonl) or a jsonl file")
    parser.add_argument("--endings", default="endings", help="field holding the list of choices")
    parser.add_argument("--label", default="label", help="field holding the index of the right choice")
    parser.add_argument("--prompt", default="prompt", help="field holding the shared prompt (may be absent)")
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")
    args = parser.parse_args(argv)
    try:
        rows = read_set(args.path, endings_field=args.endings, label_field=args.label)
        report = audit_rows(rows, endings_field=args.endings, label_field=args.label, prompt_field=args.prompt)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(report, indent=2) if args.json else format_audit(report))


if __name__ == "__main__":
    if sys.argv[1:2] in (["--help"], ["-h"]):   # Hydra's help would show the trainer's, without `audit`
        print(__doc__)
        print("Every override of `python -m stilts_lab --help` applies; `audit --help` lists the audit's options.")
        sys.exit(0)
    if sys.argv[1:2] == ["audit"]:
        audit_main(sys.argv[2:])
        sys.exit(0)
    # This entry point builds one task only, so select it unless the command line already did.
    if not any(arg.lstrip("+~").startswith("intermediate=") for arg in sys.argv[1:]):
        sys.argv.append("intermediate=realfake")
    main()
