"""What to estimate: the starting points (the plain encoder, each intermediate checkpoint) and the
targets of a sweep, read from its finished trials or composed from its Hydra overrides."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stilts_lab.errors import ConfigError
from stilts_lab.models.encoder import resolve_pretrained, resolve_tokenizer
from stilts_lab.results import METRICS_FILE, read_metrics

CONF = Path(__file__).resolve().parents[1] / "conf"


@dataclass(frozen=True)
class Start:
    intermediate: str          # "none" for the plain encoder
    intermediate_seed: int | None
    source: str                # folder or Hub id AutoModel loads


@dataclass
class Plan:
    starts: list[Start]
    targets: dict[str, dict]   # target name -> its resolved task config
    tokenizer_source: str
    data_dir: str | None
    cache_dir: str | None
    split_seed: int
    trial_seconds: float = 0.0  # summed cost of the trials found (0 before any has run)
    trials: int = 0
    notes: list[str] = field(default_factory=list)


def _plain(cfg: DictConfig) -> Start:
    return Start("none", None, resolve_pretrained(cfg.model))


def _paths(cfg: DictConfig) -> tuple[str | None, str | None]:
    from stilts_lab.checkpoints import abspath
    return abspath(cfg.paths.data_dir), abspath(cfg.paths.cache_dir)


def _merge(plans_cfgs: list[DictConfig], starts: list[Start]) -> Plan:
    first = plans_cfgs[0]
    data_dir, cache_dir = _paths(first)
    targets = {str(c.target.name): OmegaConf.to_container(c.target, resolve=True) for c in plans_cfgs}
    starts = list(dict.fromkeys([_plain(first)] + starts))
    return Plan(starts, targets, resolve_tokenizer(first.model), data_dir, cache_dir, int(first.data.split_seed))


def from_sweep(sweep_dir: Path) -> Plan:
    """Every metrics.json under sweep_dir: its recorded config names the target and model, and its
    intermediate_checkpoint {key, path} the cached encoder it started from."""
    cfgs, starts, seconds, trials = [], [], 0.0, 0
    for path in sorted(Path(sweep_dir).rglob(METRICS_FILE)):
        metrics = read_metrics(path)
        if not isinstance(metrics, dict) or not metrics.get("config"):
            continue
        cfg = OmegaConf.create(metrics["config"])
        if str(cfg.target.name) == "none":
            continue
        cfgs.append(cfg)
        trials += 1
        # fit_seconds (the whole target stage) when recorded, else the timed train epochs
        seconds += float(metrics.get("fit_seconds") or metrics.get("train_seconds") or 0)
        ckpt = metrics.get("intermediate_checkpoint")
        if ckpt and ckpt.get("path"):
            if not Path(ckpt["path"]).is_dir():
                raise ConfigError(f"{path}: intermediate_checkpoint.path {ckpt['path']} is not a folder "
                                  "(the cache was moved or cleared; re-run with overrides to train it again)")
            starts.append(Start(str(cfg.intermediate.name), int(cfg.intermediate.seed), str(ckpt["path"])))
    if not cfgs:
        raise ConfigError(f"{sweep_dir}: no metrics.json with a recorded config under it")
    plan = _merge(cfgs, starts)
    plan.trial_seconds, plan.trials = seconds, trials
    return plan


def expand(overrides: list[str]) -> list[list[str]]:
    """The sweep's trials as override lists, the way Hydra's basic sweeper expands them: the command
    line's comma lists and the experiment's hydra.sweeper.params, as a cartesian product."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    base = [o for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hcfg = compose(config_name="config", overrides=[o.input_line for o in base], return_hydra_config=True)
    params = hcfg.hydra.sweeper.get("params")
    # resolved: a grid may name its values by interpolation (optim.lr: ${model.grid_lrs})
    params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
    given = {o.get_key_element() for o in parser.parse_overrides(overrides)}
    extra = [f"{k}={v}" for k, v in params.items() if k not in given]
    return BasicSweeper.split_arguments(parser.parse_overrides(list(overrides) + extra), None)[0]


def from_overrides(overrides: list[str]) -> Plan:
    """Compose each trial's config; find (or train) the intermediate checkpoint it would start from."""
    from hydra import compose, initialize_config_dir
    from stilts_lab.checks import check_config
    from stilts_lab.checkpoints import intermediate_checkpoint, locate
    from stilts_lab.models.encoder import load_tokenizer

    cfgs, starts, seen = [], [], set()
    trials = expand(overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for trial in trials:
            cfgs.append(compose(config_name="config", overrides=trial))
    for cfg in cfgs:
        check_config(cfg)
        if str(cfg.intermediate.name) == "none":
            continue
        key = locate(cfg).key   # identity.intermediate_key: the one definition of "the same checkpoint"
        if key in seen:
            continue
        seen.add(key)
        # logs of an intermediate trained here go beside the cache, never into a sweep folder
        OmegaConf.update(cfg, "output_dir", str(Path(_paths(cfg)[1] or ".") / "transfer-runs"), force_add=True)
        tokenizer = load_tokenizer(resolve_tokenizer(cfg.model))
        _, path = intermediate_checkpoint(cfg, tokenizer, resolve_pretrained(cfg.model))
        starts.append(Start(str(cfg.intermediate.name), int(cfg.intermediate.seed), str(path)))
    return _merge(cfgs, starts)
