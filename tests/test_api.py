"""The Python entry points a notebook uses, and the command line's one-line answer to a typo."""
from __future__ import annotations

import subprocess
import sys

import stilts_lab
from stilts_lab.command_line import unknown_group_choice, unread_additions
from tests.conftest import TINY, compose_config


def test_run_from_python_then_load_its_results(tmp_path, data_dir, cache_dir, monkeypatch):
    monkeypatch.setenv("STILTS_DATA_DIR", str(data_dir))
    metrics = stilts_lab.run(TINY + [f"paths.cache_dir={cache_dir}"], output_dir=tmp_path / "trial")
    assert metrics["status"] in ("ok", "diverged") and (tmp_path / "trial" / "metrics.json").is_file()
    from datetime import datetime
    start, end = (datetime.fromisoformat(metrics[k]) for k in ("started_at", "finished_at"))
    assert start.utcoffset().total_seconds() == 0 and 0 < (end - start).total_seconds() < 600
    results = stilts_lab.load_results(tmp_path)
    assert len(results) == 1 and results.loc[0, "best_dev_metric"] == metrics["best_dev_metric"]
    assert results.loc[0, "arm"] and results.loc[0, "intermediate"] == "none"


def test_a_typo_in_a_group_is_one_line_naming_the_option():
    run = subprocess.run([sys.executable, "-m", "stilts_lab", "target=rtee"], capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.strip() == "error: target=rtee: no target 'rtee' (did you mean rte?)"
    assert unknown_group_choice(["intermediate=none,hellaswag_q"]).endswith("(did you mean hellaswag_p, hellaswag?)")
    assert unknown_group_choice(["+experiment=verdict_matrix", "target=rte", "optim.lr=1e-5"]) is None
    assert "options: " in unknown_group_choice(["model=zzzz"])


def test_a_plus_key_that_nothing_reads_is_warned_by_name(data_dir):
    overrides = ["+optim.lrr=1e-4", "+experiment=vanilla_rte", "+output_dir=/tmp/x", "+target.feilds=[a]"]
    cfg = compose_config(overrides, data_dir=data_dir)
    assert unread_additions(overrides, cfg) == [
        "warning: +optim.lrr: no setting of stilts_lab reads optim.lrr; the run ignores it (did you mean optim.lr?)"]


def test_help_opens_with_the_commands():
    main = subprocess.run([sys.executable, "-m", "stilts_lab", "--help"], capture_output=True, text=True)
    assert main.stdout.startswith("python -m stilts_lab [+experiment=NAME]") and "powered by Hydra" not in main.stdout
    synth = subprocess.run([sys.executable, "-m", "stilts_lab.synth", "--help"], capture_output=True, text=True)
    assert synth.returncode == 0 and "python -m stilts_lab.synth audit PATH" in synth.stdout


def test_the_fresh_head_report_is_dropped_and_a_damaged_checkpoint_report_is_not():
    import logging

    from stilts_lab.logging_setup import DropFreshHeadReport

    def record(text):
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "", 0, text, None, None)
    fresh = "BertForSequenceClassification LOAD REPORT from: x\nKey | Status\nclassifier.bias | MISSING\nclassifier.weight | MISSING"
    damaged = fresh + "\nencoder.layer.0.attention.self.query.weight | MISSING"
    keep = DropFreshHeadReport().filter
    assert not keep(record(fresh)) and keep(record(damaged)) and keep(record("another warning"))
