"""The benchmarks smoke-run on the CPU (bench/gpu_session.sh with SMOKE=1, which runs bench/gpu_throughput.py
with a tiny shape; bench/cpu_throughput.py on 16 examples): every arm trains the same data and lands in the
table, so neither rots between the sessions that measure them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_cpu_throughput_bench_smoke(tmp_path, data_dir):
    """make bench-cpu's arms on 16 examples: every arm trains the same rows and lands in the table."""
    proc = subprocess.run([sys.executable, "bench/cpu_throughput.py", "--tiny", "--limit", "16", "--epochs", "1", "--out",
                           str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, env=dict(os.environ, STILTS_DATA_DIR=str(data_dir)),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "cpu_throughput-tiny.json").read_text())
    arms = ["original", "hf_fp32", "hf_bf16", "bare_fp32", "bare_bf16", "project", "project_fp32"]
    assert record["examples"] == 16 and record["max_length"] == 100 and record["timed"] == "last epoch"
    assert record["epochs"] == 1
    assert list(record["train_examples_per_second"]) == arms
    table = proc.stdout[proc.stdout.index("project / arm"):]
    rates = record["train_examples_per_second"]
    for arm in arms:
        (row,) = [line for line in table.splitlines()[1:] if line.startswith(f"{arm} ")]
        # the printed ratio is the JSON's medians divided here, not the bench's own arithmetic
        assert row.split()[-1] == f"{rates['project']['median'] / rates[arm]['median']:.2f}", row
        assert rates[arm]["min"] <= rates[arm]["median"] <= rates[arm]["max"]


def _arms_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_arms", REPO / "bench" / "arms.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up by name
    spec.loader.exec_module(sys.modules[spec.name])
    return module


def test_the_ratio_table_divides_the_medians(capsys):
    """Hand-computed: the project's runs 30, 10, 20 ex/s have median 20; a peer's 8 and 12, median 10
    (the mean of the middle two); another's 40. project / arm: 2.00 and 0.50. Without a project arm
    the ratio column says "-"."""
    arms = _arms_module()
    stats = arms.summary({"project": [30.0, 10.0, 20.0], "peer": [8.0, 12.0], "fast": [40.0]})
    assert {name: (s["median"], s["min"], s["max"]) for name, s in stats.items()} == {
        "project": (20.0, 10.0, 30.0), "peer": (10.0, 8.0, 12.0), "fast": (40.0, 40.0, 40.0)}
    arms.print_table(stats)
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert {name: row[-1] for name, row in rows.items()} == {"project": "1.00", "peer": "2.00", "fast": "0.50"}
    assert rows["peer"][1:3] == ["10.00", "8.00-12.00"]
    arms.print_table({"peer": stats["peer"]}, mine="project")
    assert capsys.readouterr().out.splitlines()[2].split()[-1] == "-"


def _gpu_session(tmp_path, data_dir, **env):
    env = dict(os.environ, SMOKE="1", OUT=str(tmp_path / "out"), CACHE=str(tmp_path / "cache"),
               STILTS_DATA_DIR=str(data_dir), PY=sys.executable, **env)
    proc = subprocess.run(["bash", "bench/gpu_session.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=2400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (tmp_path / "out" / "log").read_text()


@pytest.mark.slow
def test_gpu_session_runs_both_stages(tmp_path, data_dir):
    """bench/gpu_session.sh's logic on the CPU (SMOKE=1: tiny shapes and sizes): every step exits 0, the
    first run trains the target stage alone, the second trains an intermediate stage (COPA) whose
    checkpoint the target stage (RTE) starts from, and the throughput bench (bench/gpu_throughput.py) puts
    every arm and the 2-trial grid in its table."""
    log = _gpu_session(tmp_path, data_dir)
    exits = [line.split()[-1] for line in log.splitlines() if line.startswith("== exit")]
    # imports, the target stage alone, both stages, the optimizer-step bench, the throughput bench
    assert exits == ["0"] * 5, log[-3000:]
    one, two = (json.loads((tmp_path / "out" / run / "metrics.json").read_text()) for run in ("run_gpu", "run_two_stages"))
    assert one["intermediate"] == "none" and one["intermediate_checkpoint"] is None and one["status"] != "failed"
    assert two["intermediate"] == "copa" and two["status"] != "failed", two["error"]
    stage = json.loads((Path(two["intermediate_checkpoint"]["path"]) / "stage_metrics.json").read_text())
    assert stage["train_examples"] == 16 and two["split"]["train_examples"] == 16

    record = json.loads((tmp_path / "out" / "gpu_throughput-cpu-tiny.json").read_text())
    assert record["examples"] == 16 and record["max_length"] == 128
    rates = record["train_examples_per_second"]
    assert set(rates) == {"original", "hf", "bare", "project"}
    assert record["timed"] == "last epoch" and record["epochs"] == 1
    for arm in rates.values():  # one interleaved repeat: the median is that run
        assert arm["runs"] == [arm["median"]] and arm["min"] <= arm["median"] <= arm["max"]
    (grid,) = record["grid"]
    assert (grid["trials"], grid["failed"], grid["exit_code"]) == (2, 0, 0)
    table = log[log.index("bench/gpu_throughput.py"):]
    for arm in ("original", "hf", "bare", "project"):
        assert f"\n{arm} " in table  # the ratio table


def test_gpu_session_stops_inside_its_budget(tmp_path, data_dir):
    """Each step's limit is cut to what is left of BUDGET: with none left, every step is skipped."""
    log = _gpu_session(tmp_path, data_dir, BUDGET="0")
    assert "== exit" not in log and log.count("== skipped (budget spent)") == 5, log
