"""The command line:
    python -m stilts_lab.report DIR [DIR ...] [--out DIR] [--factor KEY] [--contrast A:B ...]
                                [--correction holm|bh] [--margin 0.01] [--hypotheses] [--publish-claims PAGE]
                                [--results-only]
    python -m stilts_lab.report plan DIR [DIR ...] --effect 0.01 --family-size M [--arms J]
    python -m stilts_lab.report ordering A_DIR B_DIR [--labels full,lora] [--out ordering.csv]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from stilts_lab.errors import StiltsError
from stilts_lab.report.claims import CORRECTIONS
from stilts_lab.report.tables import MARGIN
from stilts_lab.report.write import write_report, write_results


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plan"]:
        return plan_main(argv[1:])
    if argv[:1] == ["ordering"]:
        return ordering_cli(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m stilts_lab.report",
                                     description="Report over finished sweeps: results.csv, summary.md, claims.csv, "
                                                 "figures. `python -m stilts_lab.report plan -h` sizes a design.")
    parser.add_argument("dirs", nargs="+", type=Path,
                        help="sweep directories, searched recursively for metrics.json (or a report's results.csv)")
    parser.add_argument("--out", type=Path, help="output directory (default: FIRST_DIR/report)")
    parser.add_argument("--factor", help="config key to plot against, e.g. intermediate.train_size")
    parser.add_argument("--contrast", action="append", default=[], metavar="A:B",
                        help="intermediate arm A against arm B, paired over the grid cells both filled, "
                             "e.g. realfake_swapped:realfake (repeatable; 'vanilla' names no intermediate stage)")
    parser.add_argument("--correction", choices=sorted(CORRECTIONS), default="holm",
                        help="multiplicity correction over each family: holm (family-wise error, default) or "
                             "bh (Benjamini-Hochberg, false discovery rate)")
    parser.add_argument("--margin", type=_positive, default=MARGIN,
                        help=f"equivalence margin of TOST, in the metric's units (default {MARGIN})")
    parser.add_argument("--hypotheses", action="store_true",
                        help="test the paper's claims H1-H5 (realfake_paper, hellaswag_p, realfake against vanilla; "
                             "H4 needs vanilla trials with replicate=1): hypotheses.csv and a section in summary.md")
    parser.add_argument("--publish-claims", type=Path, metavar="PAGE",
                        help="also copy claims.md into PAGE, between its lines <!-- claims.md: begin --> and "
                             "<!-- claims.md: end --> (a results page publishing the report's claims verbatim)")
    parser.add_argument("--results-only", action="store_true",
                        help="write results.csv alone, no test: a preregistered sweep's finished trials, committed "
                             "while it runs (carried to another machine, where resume reads them), unread")
    args = parser.parse_args(argv)
    try:
        if args.results_only:
            for path in write_results(args.dirs, args.out or args.dirs[0] / "report").values():
                print(f"wrote {path}")
            return 0
        written = write_report(args.dirs, args.out, args.factor, args.contrast, args.correction, args.margin,
                               args.hypotheses)
        if args.publish_claims:
            written["published claims"] = publish_claims(written["claims.md"], args.publish_claims)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in written.values():
        print(f"wrote {path}")
    return 0


CLAIMS_BEGIN, CLAIMS_END = "<!-- claims.md: begin -->\n", "<!-- claims.md: end -->"


def publish_claims(claims: Path, page: Path) -> Path:
    """Replace what lies between the claims markers of `page` with `claims` (checked before writing)."""
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    if CLAIMS_BEGIN not in text or CLAIMS_END not in text.split(CLAIMS_BEGIN, 1)[1]:
        raise StiltsError(f"{page}: needs the lines {CLAIMS_BEGIN.strip()} and {CLAIMS_END} (in that order) "
                          "to publish the claims between")
    head, rest = text.split(CLAIMS_BEGIN, 1)
    page.write_text(head + CLAIMS_BEGIN + claims.read_text(encoding="utf-8") + CLAIMS_END
                    + rest.split(CLAIMS_END, 1)[1], encoding="utf-8")
    return page


def plan_main(argv: Sequence[str]) -> int:
    from stilts_lab.report.plan import print_plan
    parser = argparse.ArgumentParser(prog="python -m stilts_lab.report plan",
                                     description="The intermediate seeds and grid cells a design needs to detect an "
                                                 "effect at 80% power after Holm over M tests, from a pilot sweep's "
                                                 "variance components, and what each design costs in trials.")
    parser.add_argument("dirs", nargs="+", type=Path, help="the pilot sweep (metrics.json or a report's results.csv)")
    parser.add_argument("--effect", type=_positive, required=True, help="the Δ to detect, in the metric's units")
    parser.add_argument("--family-size", type=int, default=None,
                        help="tests in the family the correction covers (default: the pilot's matrix cells)")
    parser.add_argument("--arms", type=int, default=None, help="intermediate arms per target (default: the pilot's)")
    args = parser.parse_args(argv)
    try:
        print_plan(args.dirs, args.effect, args.family_size, args.arms)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def ordering_cli(argv: Sequence[str]) -> int:
    from stilts_lab.report.ordering import ordering_main
    parser = argparse.ArgumentParser(prog="python -m stilts_lab.report ordering",
                                     description="Do two sweeps order their intermediates alike (per target)? Spearman's "
                                                 "rho of the Δ means, exact p, an interval from resampling both "
                                                 "sides' cells, P(same best). E.g. LoRA stages against full fine-tuning.")
    parser.add_argument("a", type=Path, help="one sweep (metrics.json or a report's results.csv)")
    parser.add_argument("b", type=Path, help="the other")
    parser.add_argument("--labels", default="A,B", help="the two sides' names in the table (default A,B)")
    parser.add_argument("--out", type=Path, help="also write the table as CSV")
    args = parser.parse_args(argv)
    labels = args.labels.split(",")
    if len(labels) != 2:
        print(f"error: --labels takes two names, got {args.labels!r}", file=sys.stderr)
        return 2
    try:
        ordering_main(args.a, args.b, (labels[0], labels[1]), args.out)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
