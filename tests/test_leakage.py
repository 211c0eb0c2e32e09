"""No target dev row is ever trained on, in any stage: tasks carved from one file carve it once, under
data.split_seed, for both stages, and every trial's splits.json names the rows each stage used."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from stilts_lab.data.task_files import is_carved, task_files
from stilts_lab.data.tasks import load_task
from stilts_lab.pipeline import SPLITS_FILE, run
from tests.conftest import CONF, compose_config

TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))


def _task(name: str, data_dir: Path) -> dict:
    return OmegaConf.to_container(compose_config([f"target={name}"], data_dir=data_dir).target, resolve=True)


def _sharing_pairs(data_dir: Path) -> list[tuple[str, str]]:
    """(intermediate, target) pairs of carved tasks that read one and the same file, a task with itself too."""
    files = {}
    for name in TASKS:
        task = _task(name, data_dir)
        if task.get("format") != "realfake" and is_carved(task, data_dir):
            files[name] = {p.resolve() for p in task_files(task, data_dir).values() if p.is_file()}
    return [(a, b) for a, b in itertools.product(files, repeat=2) if files[a] & files[b]]


def test_every_pair_of_tasks_sharing_a_file_carves_it_the_same_way(data_dir):
    pairs = _sharing_pairs(data_dir)
    assert ("hellaswag_p", "hellaswag") in pairs and ("wic", "wic") in pairs
    for intermediate, target in pairs:
        seed = 7  # data.split_seed: the one seed both stages carve under
        trained = load_task(_task(intermediate, data_dir), data_dir=str(data_dir), split_seed=seed).train
        scored = load_task(_task(target, data_dir), data_dir=str(data_dir), split_seed=seed).eval
        assert trained.file == scored.file
        assert not set(trained.rows) & set(scored.rows), f"{intermediate} -> {target}: dev rows trained on"


def test_a_trial_writes_its_rows_and_trains_on_no_target_dev_row(data_dir, cache_dir, tmp_path):
    """hellaswag_p as the intermediate stage, hellaswag as the target: one file. 1,000 intermediate
    train rows against 32 target dev rows: carved under two seeds, ~9 of them would overlap."""
    cfg = compose_config(["intermediate=hellaswag_p", "target=hellaswag", "intermediate.train_size=1000",
                          "intermediate.eval_size=16", "intermediate.max_steps=1", "target.train_size=16",
                          "target.eval_size=32", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                          "data.batch_size=16", "resume=false"],
                         data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path)
    metrics = run(cfg)
    assert metrics["status"] in ("ok", "diverged"), metrics["error"]
    splits = json.loads((tmp_path / SPLITS_FILE).read_text())
    assert set(splits) == {"intermediate", "target"}
    inter, target = splits["intermediate"], splits["target"]
    assert len(inter["train"]["rows"]) == 1000 and len(target["eval"]["rows"]) == 32
    assert inter["train"]["file"] == target["eval"]["file"]
    assert Path(target["eval"]["file"]).name == "hellaswag_train.first3368.jsonl"
    lines = Path(target["eval"]["file"]).read_text().count("\n")
    assert all(1 <= r <= lines for r in target["eval"]["rows"] + inter["train"]["rows"])  # 1-based data lines
    assert not set(inter["train"]["rows"]) & set(target["eval"]["rows"])
    assert not set(target["train"]["rows"]) & set(target["eval"]["rows"])


def test_a_vanilla_trial_has_no_intermediate_entry(data_dir, cache_dir, tmp_path):
    cfg = compose_config(["intermediate=none", "target=rte", "target.train_size=16", "target.eval_size=16",
                          "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "resume=false"],
                         data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path)
    run(cfg)
    splits = json.loads((tmp_path / SPLITS_FILE).read_text())
    assert set(splits) == {"target"}
    assert Path(splits["target"]["train"]["file"]).name == "train.tsv" and len(splits["target"]["eval"]["rows"]) == 16
    assert min(splits["target"]["train"]["rows"]) >= 2  # line 1 is the header
