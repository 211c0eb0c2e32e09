"""A non-editable install works: build the wheel, install it into a temp target, and compose
configs from a directory that is not the checkout (the conf/ tree ships inside the wheel)."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    # Build from a copy so the shared checkout never gets build/ or egg-info folders from a test.
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "conf", tree / "conf", symlinks=True)
    shutil.copytree(REPO / "src" / "stilts_lab", tree / "src" / "stilts_lab", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    dist = tree / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(tree),
                    "-w", str(dist)], check=True, cwd=tree, capture_output=True, timeout=300)
    wheel = next(dist.glob("stilts_lab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    # conf/target and conf/intermediate are symlinks to conf/task in the checkout: real files here
    for task in (REPO / "conf" / "task").glob("*.yaml"):
        for group in ("task", "target", "intermediate"):
            assert f"stilts_lab/conf/{group}/{task.name}" in names
    assert "stilts_lab/conf/config.yaml" in names
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    assert not (target / "stilts_lab" / "conf").is_symlink()
    return target


def from_elsewhere(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # Dependencies come from this venv; stilts_lab itself from the installed wheel (PYTHONPATH first).
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(installed), "HOME": str(cwd)})


def test_installed_wheel_composes_configs_outside_the_checkout(installed, tmp_path):
    r = from_elsewhere(installed, tmp_path, "-m", "stilts_lab", "--info", "searchpath")
    assert r.returncode == 0, r.stderr
    assert f"file://{installed}/stilts_lab/conf" in r.stdout  # the wheel's copy, not the checkout's

    r = from_elsewhere(installed, tmp_path, "-m", "stilts_lab", "--cfg", "job", "target=cola",
                       "intermediate=hellaswag_p", "logger=tensorboard")
    assert r.returncode == 0, r.stderr
    assert "name: cola" in r.stdout and "name: hellaswag_p" in r.stdout and "tensorboard" in r.stdout

    r = from_elsewhere(installed, tmp_path, "-m", "stilts_lab.synth", "--cfg", "job")
    assert r.returncode == 0, r.stderr
    assert "name: realfake" in r.stdout
