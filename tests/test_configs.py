"""Every experiment composes, with the overrides later tools rely on; configs name real things."""

import pytest
from omegaconf import OmegaConf

from stilts_lab.checks import check_config
from stilts_lab.identity import config_hash
from tests.conftest import CONF, compose_config
from tests.test_identity import _leaves

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
COMMON = ["seed=12", "target.train_size=100", "target.eval_size=50", "intermediate.train_size=2000",
          "trainer.max_epochs=2", "optim.lr=3e-5", "optim.warmup_ratio=0.2", "data.batch_size=8",
          "hydra.run.dir=/tmp/x"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_checks(experiment):
    """With the overrides a sweep adds, every experiment composes and passes the checks; and what its
    own file sets (read here from the file, not from a composition) is what it composes to: no group
    it picks, no stage default, overrides it."""
    cfg = compose_config([f"+experiment={experiment}"] + [o for o in COMMON if not o.startswith("hydra")])
    OmegaConf.resolve(cfg)
    check_config(cfg)
    own = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml"))
    expected = {key: value for key, value in _leaves({k: v for k, v in own.items() if k not in ("defaults", "hydra")})
                if not (isinstance(value, str) and "${" in value)}
    alone = compose_config([f"+experiment={experiment}"])
    assert {key: OmegaConf.select(alone, key) for key in expected} == expected


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_opens_with_the_command_that_runs_it(experiment):
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    assert "python -m stilts_lab" in text and f"+experiment={experiment}" in text
    assert text.startswith("# @package _global_")


@pytest.mark.parametrize("intermediate", ["none", "realfake"])
def test_sweep_overrides_accepted_by_both_arms(intermediate):
    """An ablation sweeps intermediate.train_size over both arms: vanilla's config takes the key too
    (composing and the checks raise nothing)."""
    check_config(compose_config([f"intermediate={intermediate}", "intermediate.train_size=2000"]))


GROUP_OPTIONS = [("model", "minilm_l6"), ("model", "roberta_large"), ("model", "roberta_base"),
                 ("generator", "smollm2_135m"), ("generator", "gpt2_medium"), ("trainer", "cpu"),
                 ("trainer", "gpu"), ("intermediate", "none"), ("intermediate", "realfake"), ("target", "rte")]


@pytest.mark.parametrize("group, option", GROUP_OPTIONS)
def test_group_option_is_what_composes(group, option):
    """Choosing an option puts that file's own values in the group: nothing composed after it
    (the stage defaults in config.yaml, another group) overrides them."""
    own = OmegaConf.load(CONF / group / f"{option}.yaml")
    composed = compose_config([f"{group}={option}"])[group]
    values = {k: v for k, v in OmegaConf.to_container(own).items()
              if not (isinstance(v, str) and v.startswith("${"))}  # interpolations resolve elsewhere
    assert values, f"{group}/{option}.yaml sets nothing of its own"
    assert {k: OmegaConf.to_container(composed, resolve=True)[k] for k in values} == values
    others = [o for g, o in GROUP_OPTIONS if g == group and o != option]
    for other in others:  # and the options of one group are distinguishable
        assert OmegaConf.to_container(compose_config([f"{group}={other}"])[group]) != OmegaConf.to_container(composed)


def test_model_defaults_flow_to_target_stage():
    cfg = compose_config(["model=roberta_large"])
    assert cfg.optim.lr == 1e-5 and cfg.trainer.max_epochs == 5
    assert compose_config([]).optim.lr == 1e-4  # MiniLM learns at a larger rate


def test_config_hash_tracks_results_not_locations(tmp_path):
    a = compose_config(["seed=1"], cache_dir=tmp_path / "a")
    b = compose_config(["seed=1"], cache_dir=tmp_path / "b")
    c = compose_config(["seed=2"], cache_dir=tmp_path / "a")
    assert config_hash(a) == config_hash(b) != config_hash(c)


STAGE_KEYS = ("train_size", "eval_size", "max_epochs", "lr", "batch_size", "warmup_ratio", "seed")


def test_cpu_experiments_share_one_intermediate_stage():
    """One block (intermediate_stage/minilm_cpu) sets the real-fake stage of these experiments, so a
    sweep reuses the checkpoint `make run` trained: the same stage settings in each."""
    stages = {}
    for experiment in ("realfake_to_rte", "small_grid", "ablation_target_size"):
        cfg = compose_config([f"+experiment={experiment}", "intermediate=realfake"])
        stages[experiment] = {k: cfg.intermediate[k] for k in STAGE_KEYS}
        assert "intermediate_stage" not in cfg  # merged into `intermediate`, not a node of its own
    own = OmegaConf.load(CONF / "intermediate_stage" / "minilm_cpu.yaml")
    assert all(stage == stages["realfake_to_rte"] for stage in stages.values()), stages
    assert {k: stages["small_grid"][k] for k in own} == OmegaConf.to_container(own)


def test_the_trainer_configs_say_what_the_eval_batch_defaults_to(data_dir):
    """cpu.yaml documents the default dev batch; the data module is what decides it."""
    from stilts_lab.data.datamodule import TaskDataModule
    from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer

    cfg = compose_config(["data.batch_size=12"], data_dir=data_dir)
    assert cfg.trainer.eval_batch_size is None
    dm = TaskDataModule(OmegaConf.to_container(cfg.target, resolve=True), load_tokenizer(resolve_tokenizer(cfg.model)),
                        batch_size=12, seed=0, split_seed=0, data_dir=data_dir, cache_dir=None,
                        eval_batch_size=cfg.trainer.eval_batch_size)
    comment = next(line for line in (CONF / "trainer" / "cpu.yaml").read_text().splitlines()
                   if line.startswith("eval_batch_size:"))
    assert dm.eval_batch_size == 24 and "null: 2 x data.batch_size" in comment


def test_verdict_matrix_expands_to_its_paired_design():
    """The predictions-first step expands the sweep the way Hydra will: the grid's learning rates come
    from model.grid_lrs by interpolation, and every (start, target) gets the same 6 cells."""
    from stilts_lab.transfer.plan import expand

    trials = [dict(o.split("=", 1) for o in t[1:]) for t in expand(["+experiment=verdict_matrix"])]
    assert {t["optim.lr"] for t in trials} == {"2.5e-05", "5e-05", "0.0001"}  # not the literal ${...}
    assert {t["target"] for t in trials} == {"rte", "wic", "socialiqa"}
    starts = {(t["intermediate"], t["intermediate.seed"]) for t in trials}
    assert len({s[0] for s in starts}) == 6 and len(starts) == 12
    cells = {}
    for t in trials:
        cells.setdefault((t["intermediate"], t["intermediate.seed"], t["target"]), set()).add((t["seed"], t["optim.lr"]))
    assert len(set(map(frozenset, cells.values()))) == 1 and len(next(iter(cells.values()))) == 6


def test_profiler_is_checked_before_training():
    """trainer.profiler takes Lightning's profiler names; anything else is one error naming the key."""
    from stilts_lab.errors import ConfigError

    check_config(compose_config(["trainer.profiler=simple"]))
    with pytest.raises(ConfigError, match=r"^trainer.profiler='fancy' is impossible: expected null or one of simple"):
        check_config(compose_config(["trainer.profiler=fancy"]))
