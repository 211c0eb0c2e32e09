"""What makes two trials the same (the config hash resume and reports match on), what makes two
intermediate checkpoints the same (the intermediate key), and what happens to a diverged
intermediate stage: recorded, never reused, retried by a later command."""
import json
import shutil
from pathlib import Path

import pytest

from stilts_lab.identity import config_hash, data_hashes, intermediate_key
from stilts_lab.errors import DivergedError
from stilts_lab.checkpoints import DIVERGED_SUFFIX, intermediate_data_parts
from stilts_lab.pipeline import COMPLETE_FILE, run
from stilts_lab.results import METRICS_FILE
from tests.conftest import compose_config, spy_stages


def copy_root(data_dir: Path, dst: Path, edit: dict[str, callable] | None = None) -> Path:
    """A copy of the data dirs the tests here read, each file optionally edited (text -> text)."""
    for sub in ("rte", "socialiqa", "copa"):
        shutil.copytree(data_dir / sub, dst / sub)
    for rel, change in (edit or {}).items():
        (dst / rel).write_text(change((dst / rel).read_text(encoding="utf-8")), encoding="utf-8")
    return dst


def test_config_hash_follows_the_data_not_its_location(tmp_path, data_dir):
    same = copy_root(data_dir, tmp_path / "same")
    edited = copy_root(data_dir, tmp_path / "edited", {"rte/train.tsv": lambda t: t.replace("Iraq", "Irak", 1)})
    h = config_hash(compose_config([], data_dir=data_dir))
    assert config_hash(compose_config([], data_dir=same)) == h          # moved data: the same trial
    assert config_hash(compose_config([], data_dir=edited)) != h        # edited data: another trial
    assert set(data_hashes(compose_config(["intermediate=copa"], data_dir=data_dir))) == {
        "target.files.train", "target.files.eval", "intermediate.files.train", "intermediate.files.eval"}
    # a label file read by a transform counts as data too
    assert "target.transforms.attach_label_file.label_file.eval" in data_hashes(
        compose_config(["target=socialiqa"], data_dir=data_dir))
    labels = copy_root(data_dir, tmp_path / "labels", {"socialiqa/dev-labels.lst": lambda t: t.replace("1", "2", 1)})
    assert (config_hash(compose_config(["target=socialiqa"], data_dir=labels))
            != config_hash(compose_config(["target=socialiqa"], data_dir=data_dir)))


@pytest.mark.parametrize("override", ["trainer.num_threads=1", "trainer.enable_progress_bar=false",
                                      "data.num_workers=2", "trainer.log_every_n_steps=1", "resume=false",
                                      "paths.cache_dir=/somewhere/else", "hydra.job.name=other"])
def test_config_hash_ignores_what_never_changes_a_result(override, data_dir):
    base = compose_config(["seed=3"], data_dir=data_dir)
    assert config_hash(compose_config(["seed=3", override], data_dir=data_dir)) == config_hash(base)


@pytest.mark.parametrize("override", ["seed=4", "optim.lr=3e-5", "trainer.gradient_clip_val=0.5",
                                      "trainer.precision=64-true", "target.eval_size=50", "data.split_seed=1",
                                      "intermediate=copa"])
def test_config_hash_changes_with_what_changes_a_result(override, data_dir):
    base = compose_config(["seed=3"], data_dir=data_dir)
    assert config_hash(compose_config(["seed=3", override], data_dir=data_dir)) != config_hash(base)


def _key(overrides, data_dir) -> str:
    cfg = compose_config(["intermediate=socialiqa"] + overrides, data_dir=data_dir)
    return intermediate_key(cfg, intermediate_data_parts(cfg, None))


def test_intermediate_key_covers_training_settings_and_label_files(tmp_path, data_dir):
    base = _key([], data_dir)
    for changed in (["trainer.gradient_clip_val=0.5"], ["trainer.accelerator=gpu"], ["trainer.precision=64-true"],
                    ["intermediate.lr=1e-5"], ["intermediate.max_steps=10"], ["model.random_init=true"]):
        assert _key(changed, data_dir) != base, changed
    edited = copy_root(data_dir, tmp_path / "edited", {"socialiqa/dev-labels.lst": lambda t: t.replace("1", "3", 1)})
    assert _key([], edited) != base                                     # the label file a transform reads
    assert _key([], copy_root(data_dir, tmp_path / "same")) == base     # the same files elsewhere
    # the target stage's settings, and speed settings, do not change the checkpoint
    for same in (["trainer.max_epochs=9"], ["trainer.num_threads=1"], ["seed=5"], ["optim.lr=1e-5"], ["target=copa"]):
        assert _key(same, data_dir) == base, same


@pytest.mark.slow
def test_diverged_intermediate_is_recorded_and_never_reused(tmp_path, data_dir, cache_dir, monkeypatch):
    """An intermediate stage that diverges (here: a learning rate of 1e30) is recorded, not saved:
    the trial fails with a clear error, a second trial of the same command fails at once without
    training, and a later command (another run id) trains it again."""
    overrides = ["target.train_size=16", "target.eval_size=16", "trainer.max_epochs=1",
                 "trainer.enable_progress_bar=false", "intermediate=copa", "intermediate.train_size=16",
                 "intermediate.eval_size=8", "intermediate.max_steps=2", "intermediate.batch_size=8",
                 "intermediate.lr=1e30"]
    trained = []
    spy_stages(monkeypatch, lambda real, **kw: trained.append(kw["task"]["name"]) or real(**kw))

    def trial(seed, out):
        cfg = compose_config(overrides + [f"seed={seed}"], data_dir=data_dir, cache_dir=cache_dir, output_dir=out)
        with pytest.raises(DivergedError) as e:
            run(cfg)
        return str(e.value), json.loads((out / METRICS_FILE).read_text())

    message, metrics = trial(1, tmp_path / "a")
    assert trained == ["copa"]
    assert "intermediate stage copa" in message and "diverged while training" in message
    assert metrics["status"] == "failed" and metrics["error"].startswith("DivergedError: intermediate stage copa")
    records = list((cache_dir / "intermediate").glob(f"copa-*{DIVERGED_SUFFIX}"))
    assert len(records) == 1 and json.loads(records[0].read_text())["diverged"] is True
    final = Path(str(records[0])[: -len(DIVERGED_SUFFIX)])
    assert not (final / COMPLETE_FILE).exists()  # nothing that looks like a checkpoint

    message, metrics = trial(2, tmp_path / "b")  # the same command: fails at once, no second training
    assert trained == ["copa"] and "diverged earlier in this command" in message

    monkeypatch.setenv("STILTS_RUN_ID", "a-later-command")
    message, _ = trial(1, tmp_path / "c")       # a later command tries again
    assert trained == ["copa", "copa"] and "diverged while training" in message
    assert json.loads(records[0].read_text())["run_id"] == "a-later-command"
