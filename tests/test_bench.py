"""The benchmarks smoke-run on the CPU (bench/gpu_throughput.py with a tiny shape, bench/cpu_throughput.py on
16 examples): every arm trains the same data and lands in the table, so neither rots between the sessions
that measure them."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_throughput_bench_smoke(tmp_path, data_dir):
    proc = subprocess.run([sys.executable, "bench/gpu_throughput.py", "--device", "cpu", "--tiny", "--limit", "32",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, STILTS_DATA_DIR=str(data_dir)), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "gpu_throughput-cpu-tiny.json").read_text())
    assert record["examples"] == 32 and record["max_length"] == 128
    rates = record["train_examples_per_second"]
    assert set(rates) == {"original", "hf", "bare", "project"}
    assert record["timed"] == "last epoch" and record["epochs"] == 2
    for arm in rates.values():  # one interleaved repeat: the median is that run
        assert arm["runs"] == [arm["median"]] and arm["min"] <= arm["median"] <= arm["max"]
    (grid,) = record["grid"]
    assert (grid["trials"], grid["failed"], grid["exit_code"]) == (2, 0, 0)
    for arm in ("original", "hf", "bare", "project"):
        assert f"\n{arm} " in proc.stdout  # the ratio table


@pytest.mark.slow
def test_cpu_throughput_bench_smoke(tmp_path, data_dir):
    """make bench-cpu's arms on 16 examples: every arm trains the same rows and lands in the table."""
    proc = subprocess.run([sys.executable, "bench/cpu_throughput.py", "--tiny", "--limit", "16", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, env=dict(os.environ, STILTS_DATA_DIR=str(data_dir)),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "cpu_throughput-tiny.json").read_text())
    arms = ["original", "hf_fp32", "hf_bf16", "bare_fp32", "bare_bf16", "project", "project_bf16"]
    assert record["examples"] == 16 and record["max_length"] == 100 and record["timed"] == "last epoch"
    assert list(record["train_examples_per_second"]) == arms
    table = proc.stdout[proc.stdout.index("project / arm"):]
    for arm in arms:
        assert f"\n{arm} " in table
    (project_row,) = [line for line in table.splitlines()[1:] if line.startswith("project ")]
    assert project_row.split()[-1] == "1.00"  # the project against itself
