"""The verdict's results page publishes the report's claims table, verbatim: the block between its claims
markers in docs/results/verdict-matrix.md must equal docs/verdict_matrix/claims.md, which `make
verdict-report` writes from the committed results.csv and copies into the page
(tests/test_report_roundtrip.py checks that re-reading works)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_verdict_page_embeds_the_generated_claims():
    results = (ROOT / "docs" / "results" / "verdict-matrix.md").read_text(encoding="utf-8")
    begin, end = "<!-- claims.md: begin -->\n", "<!-- claims.md: end -->"
    assert begin in results and end in results
    embedded = results.split(begin, 1)[1].split(end, 1)[0]
    generated = (ROOT / "docs" / "verdict_matrix" / "claims.md").read_text(encoding="utf-8")
    assert embedded == generated
    assert "| claim | test | estimate | p | p adj | result |" in generated


def test_committed_claims_are_what_the_report_computes_from_results_csv(tmp_path):
    """The committed claims.md is what the report writes today from the committed results.csv (the
    Makefile's verdict-report command): a change to the statistics must regenerate the docs."""
    import re
    import shutil

    from stilts_lab.report import write_report
    source = ROOT / "docs" / "verdict_matrix"
    for name in ("results.csv", "transfer_estimates.csv"):
        shutil.copy(source / name, tmp_path / name)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    contrasts = re.findall(r"--contrast (\S+)", makefile.split("DECOMPOSITION :=", 1)[1].split("verdict-matrix:", 1)[0])
    assert len(contrasts) == 4
    written = write_report([tmp_path], tmp_path / "out", contrasts=contrasts)
    assert written["claims.md"].read_text(encoding="utf-8") == (source / "claims.md").read_text(encoding="utf-8")


def test_publish_claims_replaces_the_block_between_the_markers_and_nothing_else(tmp_path):
    import pytest

    from stilts_lab.errors import StiltsError
    from stilts_lab.report.cli import publish_claims
    claims = tmp_path / "claims.md"
    claims.write_text("| claim | new |\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Study\n\nbefore\n<!-- claims.md: begin -->\n| claim | old |\n<!-- claims.md: end -->\nafter\n",
                    encoding="utf-8")
    publish_claims(claims, page)
    assert page.read_text(encoding="utf-8") == ("# Study\n\nbefore\n<!-- claims.md: begin -->\n| claim | new |\n"
                                                "<!-- claims.md: end -->\nafter\n")
    bare = tmp_path / "bare.md"
    bare.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(StiltsError, match="bare.md"):
        publish_claims(claims, bare)
    assert bare.read_text(encoding="utf-8") == "# no markers\n"
