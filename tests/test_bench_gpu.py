"""bench/gpu_throughput.py on the CPU with a tiny shape: every arm runs on the same data and the sweep
goes through the CLI, so the GPU benchmark cannot rot between the sessions that have a GPU."""
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
    assert set(record["train_examples_per_second"]) == {"original", "hf", "bare", "project"}
    assert all(rate > 0 for rate in record["train_examples_per_second"].values())
    (grid,) = record["grid"]
    assert (grid["trials"], grid["failed"], grid["exit_code"]) == (2, 0, 0)
    for arm in ("original", "hf", "bare", "project"):
        assert f"\n{arm} " in proc.stdout  # the ratio table
