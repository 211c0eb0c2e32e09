"""Bad input gives one clear message and a non-zero exit, and loses nothing already computed."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stilts_lab.data.tasks import load_task
from stilts_lab.errors import ConfigError, DataError
from stilts_lab.pipeline import run
from tests.conftest import REPO, TINY, compose_config, spy_stages


def cli(args, env_data_dir, tmp_path):
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "STILTS_DATA_DIR": str(env_data_dir),
           "STILTS_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "stilts_lab", f"hydra.run.dir={tmp_path / 'run'}", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def fake_rte_root(tmp_path, data_dir, edit=None) -> Path:
    root = tmp_path / "data"
    (root / "rte").mkdir(parents=True)
    for other in data_dir.iterdir():  # everything but RTE as it is
        if other.is_dir() and other.name != "rte":
            (root / other.name).symlink_to(other)
    shutil.copy(data_dir / "rte" / "dev.tsv", root / "rte" / "dev.tsv")
    lines = (data_dir / "rte" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    if edit:
        lines = edit(lines)
    (root / "rte" / "train.tsv").write_text("".join(lines), encoding="utf-8")
    return root


def test_unknown_task_exits_cleanly(tmp_path, data_dir):
    r = cli(["target=nosuchtask"], data_dir, tmp_path)
    assert r.returncode != 0 and "nosuchtask" in r.stderr and "Traceback" not in r.stderr


def test_negative_lr_names_the_key(tmp_path, data_dir):
    r = cli(["optim.lr=-1e-5"], data_dir, tmp_path)
    assert r.returncode == 1 and "optim.lr=-1e-05 is impossible" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_names_both_ways(tmp_path, data_dir):
    r = cli(["target.train_size=8"], tmp_path / "empty", tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "rte/train.tsv" in r.stderr and "STILTS_DATA_DIR" in r.stderr and "nyu-mll/glue" in r.stderr
    assert '"status": "failed"' in (tmp_path / "run" / "metrics.json").read_text()


def test_unknown_model_is_a_hydra_error(tmp_path, data_dir):
    r = cli(["model=nosuchmodel"], data_dir, tmp_path)
    assert r.returncode != 0 and "nosuchmodel" in r.stderr and "Traceback" not in r.stderr


def test_malformed_row_names_file_and_line(tmp_path, data_dir):
    root = fake_rte_root(tmp_path, data_dir, lambda lines: lines[:5] + ["17\tonly two fields\n"] + lines[5:])
    cfg = compose_config(["target.train_size=8"], data_dir=root)
    with pytest.raises(DataError, match=r"rte/train.tsv:6: expected 4 tab-separated fields"):
        load_task(cfg.target, data_dir=str(root), split_seed=0)


def test_unknown_label_names_file_and_line(tmp_path, data_dir):
    root = fake_rte_root(tmp_path, data_dir, lambda lines: lines[:3] + [lines[3].replace("entailment", "maybe")] + lines[4:])
    cfg = compose_config([], data_dir=root)
    with pytest.raises(DataError, match=r"rte/train.tsv:4: unknown label 'maybe'"):
        load_task(cfg.target, data_dir=str(root), split_seed=0)


@pytest.mark.parametrize("override, key", [("target.train_size=0", "target.train_size"),
                                           ("optim.warmup_ratio=1.5", "optim.warmup_ratio"),
                                           ("data.batch_size=0", "data.batch_size"),
                                           ("trainer.max_epochs=0", "trainer.max_epochs")])
def test_impossible_values_name_the_key(override, key, tmp_path, data_dir):
    with pytest.raises(ConfigError, match=key):
        run(compose_config([override], data_dir=data_dir, output_dir=tmp_path))


@pytest.mark.slow
def test_failed_target_keeps_the_intermediate_checkpoint(tmp_path, data_dir, monkeypatch):
    """A target-stage data error after the intermediate stage finished loses nothing: the checkpoint
    is cached, and the fixed run reuses it instead of training again. A cache of its own, so no
    checkpoint from another test can stand in for it."""
    import json

    from stilts_lab.results import METRICS_FILE
    cache = tmp_path / "cache"
    broken = fake_rte_root(tmp_path, data_dir, lambda lines: lines[:2] + ["x\ty\tz\tmaybe\n"] + lines[2:])
    overrides = ["intermediate=hellaswag_p", "intermediate.train_size=16", "intermediate.eval_size=8",
                 "intermediate.max_epochs=1", "intermediate.batch_size=8"] + TINY
    with pytest.raises(DataError, match="unknown label"):
        run(compose_config(overrides, data_dir=broken, cache_dir=cache, output_dir=tmp_path / "a"))
    failed = json.loads((tmp_path / "a" / METRICS_FILE).read_text())
    assert failed["status"] == "failed" and "unknown label" in failed["error"]
    ckpt = Path(failed["intermediate_checkpoint"]["path"])
    assert (ckpt / "stage_metrics.json").is_file() and ckpt.parent == cache / "intermediate"

    stages = []
    spy_stages(monkeypatch, lambda real, **kw: stages.append(kw["task"]["name"]) or real(**kw))
    fixed = run(compose_config(overrides, data_dir=data_dir, cache_dir=cache, output_dir=tmp_path / "b"))
    assert stages == ["rte"], "the intermediate stage was trained again"
    assert fixed["status"] != "failed" and Path(fixed["intermediate_checkpoint"]["path"]) == ckpt
