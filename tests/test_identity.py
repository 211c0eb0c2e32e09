"""identity.py: one declared list of what never changes a result, read by every key and the report;
everything else changes the keys it should, leaf by leaf."""
import pandas as pd
import pytest
from omegaconf import OmegaConf

from stilts_lab.identity import (NEVER_CHANGES_RESULT, TASK_PATH_KEYS, config_hash, digest, intermediate_key,
                                 realfake_build_key, tokenization_key)
from stilts_lab.report.arms import _setting_columns
from tests.conftest import compose_config

# One override per entry of NEVER_CHANGES_RESULT: an entry added to the list without one fails
# test_every_never_entry_has_a_probe, so that every entry is shown to leave every key unchanged.
PROBES = {
    "paths": ("paths.cache_dir", "/somewhere/else"), "hydra": ("hydra.job.name", "other"),
    "logger": ("logger.tensorboard", {"save_dir": "tb"}), "output_dir": ("output_dir", "/out/elsewhere"),
    "resume": ("resume", False), "require_prepared": ("require_prepared", True),
    "prepare": ("prepare.index", 3), "trainer.num_threads": ("trainer.num_threads", 1),
    "trainer.enable_progress_bar": ("trainer.enable_progress_bar", False),
    "trainer.log_every_n_steps": ("trainer.log_every_n_steps", 1), "trainer.pin_memory": ("trainer.pin_memory", True),
    "trainer.malloc_mmap_threshold": ("trainer.malloc_mmap_threshold", 1048576),
    "trainer.malloc_trim_every_n_steps": ("trainer.malloc_trim_every_n_steps", 10),
    "trainer.profiler": ("trainer.profiler", "simple"), "data.num_workers": ("data.num_workers", 2),
    "trainer.isolate_intermediate": ("trainer.isolate_intermediate", True),
}
BASE = ["intermediate=socialiqa", "seed=3"]


def _keys(cfg) -> tuple[str, str]:
    return config_hash(cfg), intermediate_key(cfg, ["data"])


def test_every_never_entry_has_a_probe():
    assert set(PROBES) == set(NEVER_CHANGES_RESULT)


@pytest.mark.parametrize("entry", sorted(PROBES))
def test_a_setting_that_never_changes_a_result_leaves_every_key_unchanged(entry, data_dir):
    base = compose_config(BASE, data_dir=data_dir)
    probed = base.copy()
    key, value = PROBES[entry]
    before = OmegaConf.select(base, key)
    OmegaConf.update(probed, key, value, force_add=True)
    assert OmegaConf.select(probed, key) != before
    assert _keys(probed) == _keys(base)
    # nor does the report read it as a setting that splits arms
    columns = pd.json_normalize({"config": OmegaConf.to_container(probed, resolve=True)}).columns
    assert not [c for c in _setting_columns(pd.DataFrame(columns=columns), ())
                if c == f"config.{entry}" or c.startswith(f"config.{entry}.")]


def _leaves(tree: dict, prefix: str = ""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return value + ["other"]
    return "other"  # None


def _ignored(key: str) -> bool:
    head = [n for n in NEVER_CHANGES_RESULT if key == n or key.startswith(n + ".")]
    task_paths = any(key.startswith(f"{role}.{p}") for role in ("target", "intermediate") for p in TASK_PATH_KEYS)
    return bool(head) or task_paths


def _covered_by_intermediate_key(key: str) -> bool:
    return (key.startswith(("model.", "intermediate.")) or key == "data.split_seed"
            or (key.startswith("trainer.") and key != "trainer.max_epochs"))


def test_every_other_setting_changes_the_keys_it_should(data_dir):
    """Each leaf of the resolved config, changed alone: the config hash changes (but for the unused
    generator's); the
    intermediate key changes for the model, the intermediate task, the trainer (not the target's
    epochs) and data.split_seed, and for nothing of the target stage's."""
    resolved = OmegaConf.to_container(compose_config(BASE, data_dir=data_dir), resolve=True)
    base = _keys(OmegaConf.create(resolved))
    checked = 0
    for key, value in _leaves(resolved):
        if _ignored(key):
            continue
        cfg = OmegaConf.create(resolved)
        OmegaConf.update(cfg, key, _changed(value), merge=False)
        new_hash, new_key = _keys(cfg)
        # the generator only counts where a stage is built by it (not socialiqa -> rte)
        assert (new_hash != base[0]) == (not key.startswith("generator.")), key
        assert (new_key != base[1]) == _covered_by_intermediate_key(key), key
        checked += 1
    assert checked > 50  # the whole config, not a corner of it


def test_the_data_enters_by_content(data_dir):
    cfg = compose_config(BASE, data_dir=data_dir)
    assert intermediate_key(cfg, ["a"]) != intermediate_key(cfg, ["b"])


def test_the_hash_is_canonical_and_the_small_keys_cover_their_parts():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1}) != digest({"a": 1, "b": [2, 1]})
    assert realfake_build_key({"seed": 1, "fakes": "paper"}) == realfake_build_key({"fakes": "paper", "seed": 1})
    assert realfake_build_key({"seed": 1}) != realfake_build_key({"seed": 2})
    parts = dict(tokenizer_id="t", max_length=60, kind="multiple_choice", task_def={"fields": ["p"]}, source_parts=["x"])
    key = tokenization_key(**parts)
    for name, other in (("tokenizer_id", "u"), ("max_length", 61), ("kind", "classification"),
                        ("task_def", {"fields": []}), ("source_parts", ["y"])):
        assert tokenization_key(**(parts | {name: other})) != key, name


def test_what_does_not_run_does_not_split_trials(data_dir):
    """Vanilla has no intermediate stage: its trials are one trial whatever intermediate.seed says
    (a sweep over intermediate seeds runs vanilla once, not once per seed). An intermediate stage's
    seed and a real-fake build's generator do count where they run."""
    def h(*overrides):
        return config_hash(compose_config(["seed=3", *overrides], data_dir=data_dir))
    assert h("intermediate=none", "intermediate.seed=1") == h("intermediate=none", "intermediate.seed=2")
    assert h("intermediate=copa", "intermediate.seed=1") != h("intermediate=copa", "intermediate.seed=2")
    assert h("intermediate=copa", "generator.temperature=0.5") == h("intermediate=copa")
    assert h("intermediate=realfake", "generator.temperature=0.5") != h("intermediate=realfake")
