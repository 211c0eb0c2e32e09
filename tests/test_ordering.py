"""`report ordering`: do two sweeps order their intermediates alike? On synthetic sweeps whose orders
are known by construction (no training)."""
from __future__ import annotations

import numpy as np

from stilts_lab.report.cli import main
from tests.test_report import write_trial

CELLS = [(s, lr) for s in (12, 42) for lr in (1e-5, 2e-5, 5e-5)]   # 6 cells
SHIFTS = {"cola": 0.04, "mrpc": 0.02, "stsb": 0.0, "copa": -0.02, "hellaswag_p": -0.04}


def sweep(root, shifts: dict, rng, noise: float) -> None:
    for n, cell in enumerate(CELLS):
        base = 0.55 + 0.01 * n
        write_trial(root / f"none-{n}", "none", *cell, base)
        for name, shift in shifts.items():
            write_trial(root / f"{name}-{n}", name, *cell, base + shift + rng.normal(0, noise))


def test_the_same_order_is_found_and_a_reversed_one_is_not(tmp_path, capsys):
    rng = np.random.default_rng(0)
    sweep(tmp_path / "full", SHIFTS, rng, 0.002)
    sweep(tmp_path / "lora", {k: v / 2 for k, v in SHIFTS.items()}, rng, 0.002)          # the same order, halved
    sweep(tmp_path / "reversed", {k: -v for k, v in SHIFTS.items()}, rng, 0.002)
    assert main(["ordering", str(tmp_path / "full"), str(tmp_path / "lora"), "--labels", "full,lora",
                 "--out", str(tmp_path / "o.csv")]) == 0
    out = capsys.readouterr().out
    # 5 arms, identical order: rho 1, exact two-sided p 2/120, every resample keeps cola on top
    assert "| rte | 5 | 6 / 6 | +1.000 | 0.017 | [+1.00, +1.00] | 1.00 | cola | cola |" in out
    assert main(["ordering", str(tmp_path / "full"), str(tmp_path / "reversed")]) == 0
    assert "| rte | 5 | 6 / 6 | -1.000 | 0.017 | [-1.00, -1.00] | 0.00 | cola | hellaswag_p |" in capsys.readouterr().out


def test_noise_widens_the_interval_and_the_best_becomes_uncertain(tmp_path, capsys):
    rng = np.random.default_rng(1)
    sweep(tmp_path / "full", SHIFTS, rng, 0.002)
    sweep(tmp_path / "noisy", SHIFTS, rng, 0.05)     # noise far above the arms' spacing
    assert main(["ordering", str(tmp_path / "full"), str(tmp_path / "noisy")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| rte |"))
    low, high = (float(x) for x in row.split("|")[6].strip(" []").split(","))
    same_best = float(row.split("|")[7])
    assert high - low > 0.5 and 0.0 < same_best < 1.0   # the exact case above: [+1.00, +1.00], 1.00


def test_no_shared_target_is_one_error(tmp_path, capsys):
    rng = np.random.default_rng(2)
    sweep(tmp_path / "a", SHIFTS, rng, 0.002)
    (tmp_path / "empty").mkdir()
    assert main(["ordering", str(tmp_path / "a"), str(tmp_path / "empty")]) == 1
    assert "no metrics.json" in capsys.readouterr().err
    assert main(["ordering", str(tmp_path / "a"), str(tmp_path / "a"), "--labels", "one"]) == 2
