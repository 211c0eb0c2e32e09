"""Reject impossible settings before any work starts, each in one line that names the config key."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from stilts_lab.data.task_schema import check_task
from stilts_lab.devices import GPU_NAMES
from stilts_lab.errors import ConfigError

# numpy's seed range (Lightning's seed_everything seeds numpy): anything outside is a traceback there.
SEED_MAX = 2**32 - 1
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
# Lightning's profilers (trainer.profiler): where each step's time goes, printed when a stage ends
PROFILERS = ("simple", "advanced", "pytorch")
# torch.compile's modes; `true` means the default one
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _is_integer(value) -> bool:
    return _is_number(value) and float(value).is_integer() and abs(value) != float("inf")


def _fail(key: str, value, expected: str):
    raise ConfigError(f"{key}={value!r} is impossible: expected {expected}")


def _positive(cfg: DictConfig, key: str, *, allow_none=False, integer=False, allow_minus_one=False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if allow_minus_one and value == -1:
        return
    ok = (_is_integer(value) if integer else _is_number(value)) and value > 0 and value != float("inf")
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        _fail(key, value, kind + (" or null" if allow_none else "") + (" or -1" if allow_minus_one else ""))


def _integer_in(cfg: DictConfig, key: str, low: int, high: int | None = None, *, allow_none=False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if not _is_integer(value) or value < low or (high is not None and value > high):
        _fail(key, value, f"an integer in [{low}, {high if high is not None else 'inf'}]"
                          + (" or null" if allow_none else ""))


def _fraction(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not _is_number(value) or not 0 <= value < 1:
        _fail(key, value, "a fraction in [0, 1)")


def _non_negative(cfg: DictConfig, key: str, *, allow_none=False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if not _is_number(value) or value < 0 or value == float("inf"):
        _fail(key, value, "a number >= 0" + (" or null" if allow_none else ""))


def _one_of(cfg: DictConfig, key: str, options) -> None:
    value = OmegaConf.select(cfg, key)
    if str(value) not in options:
        _fail(key, value, f"one of {', '.join(options)}")


def _boolean(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        _fail(key, value, "true or false")


def check_trainer(cfg: DictConfig) -> None:
    _one_of(cfg, "trainer.accelerator", ACCELERATORS)
    _one_of(cfg, "trainer.precision", PRECISIONS)
    precision = str(OmegaConf.select(cfg, "trainer.precision"))
    if precision.startswith("16"):
        # fp16 needs a loss scaler, whose overflows on its first steps are normal: the module's
        # non-finite guard sees the gradients before the scaler unscales them and would call those
        # steps diverged. bf16 has fp32's range and needs no scaler.
        raise ConfigError(f"trainer.precision={precision} is not supported: train in bf16-mixed "
                          "(or 32-true); fp16's loss scaling is not built")
    _non_negative(cfg, "trainer.gradient_clip_val", allow_none=True)
    _positive(cfg, "trainer.num_threads", allow_none=True, integer=True)
    _positive(cfg, "trainer.malloc_mmap_threshold", allow_none=True, integer=True)
    _positive(cfg, "trainer.malloc_trim_every_n_steps", allow_none=True, integer=True)
    _positive(cfg, "trainer.log_every_n_steps", integer=True)
    _boolean(cfg, "trainer.enable_progress_bar")
    _boolean(cfg, "trainer.isolate_intermediate")
    devices = OmegaConf.select(cfg, "trainer.devices")
    if devices != 1:
        # Several devices means DDP: the length-grouped sampler is not sharded, and a re-launched rank
        # would wait on the intermediate-checkpoint lock that rank 0 holds while it waits for them.
        raise ConfigError(f"trainer.devices={devices!r} is not supported: training runs on one device "
                          "(trainer.devices=1); run trials in parallel with a Hydra launcher instead")
    profiler = OmegaConf.select(cfg, "trainer.profiler")
    if profiler is not None and str(profiler) not in PROFILERS:
        _fail("trainer.profiler", profiler, f"null or one of {', '.join(PROFILERS)}")
    compile_mode = OmegaConf.select(cfg, "trainer.compile")
    if compile_mode not in (None, False, True) and str(compile_mode) not in COMPILE_MODES:
        _fail("trainer.compile", compile_mode, f"null, true or one of {', '.join(COMPILE_MODES)}")


def check_device(cfg: DictConfig) -> None:
    """A GPU trainer on a machine without one: say so before Lightning does it in a traceback.
    Imports torch, so it runs after the cheap checks."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator"))
    if accelerator not in GPU_NAMES:  # `auto` falls back to the CPU by itself
        return
    import torch
    if not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no CUDA GPU that torch "
                          f"{torch.__version__} can use: train on the CPU with trainer.accelerator=cpu "
                          "(or trainer=cpu)")


def check_generator(cfg: DictConfig) -> None:
    """The real-fake builder's sampling settings: top_p 0 keeps no token, temperature 0 divides by zero."""
    value = OmegaConf.select(cfg, "generator.top_p")
    if not _is_number(value) or not 0 < value <= 1:
        _fail("generator.top_p", value, "a number in (0, 1]")
    _positive(cfg, "generator.temperature")
    _integer_in(cfg, "generator.top_k", 0)
    _positive(cfg, "generator.batch_size", integer=True)
    _positive(cfg, "generator.max_call_tokens", allow_none=True, integer=True)
    _positive(cfg, "intermediate.num_fakes", integer=True)
    # A sentence of n words gives a prompt of n//2 words and an ending of the rest minus the last word.
    _integer_in(cfg, "intermediate.words_min", 3)
    _integer_in(cfg, "intermediate.words_max", 3)
    if cfg.intermediate.words_min > cfg.intermediate.words_max:
        raise ConfigError(f"intermediate.words_min={cfg.intermediate.words_min} is impossible: it is above "
                          f"intermediate.words_max={cfg.intermediate.words_max}")


def check_config(cfg: DictConfig) -> None:
    for key in ("seed", "data.split_seed"):
        _integer_in(cfg, key, 0, SEED_MAX)
    _boolean(cfg, "resume")
    _positive(cfg, "optim.lr")
    _fraction(cfg, "optim.warmup_ratio")
    _non_negative(cfg, "optim.weight_decay")
    _positive(cfg, "data.batch_size", integer=True)
    _integer_in(cfg, "data.num_workers", 0)
    _positive(cfg, "trainer.max_epochs", integer=True)
    _positive(cfg, "target.train_size", allow_none=True, integer=True)
    _positive(cfg, "target.eval_size", allow_none=True, integer=True)
    check_trainer(cfg)
    if cfg.target.get("name") == "none":
        raise ConfigError("target=none is not a task: choose a target task, e.g. target=rte")
    check_task(cfg.target, "target", data_dir=cfg.paths.data_dir)
    if cfg.intermediate.get("name") != "none":
        check_task(cfg.intermediate, "intermediate", data_dir=cfg.paths.data_dir)
        for key in ("lr", "batch_size", "max_epochs", "eval_size"):
            _positive(cfg, f"intermediate.{key}", integer=key != "lr")
        _fraction(cfg, "intermediate.warmup_ratio")
        _non_negative(cfg, "intermediate.weight_decay")
        _integer_in(cfg, "intermediate.seed", 0, SEED_MAX)
        _positive(cfg, "intermediate.max_steps", integer=True, allow_minus_one=True)
        _positive(cfg, "intermediate.train_size", allow_none=cfg.intermediate.format != "realfake", integer=True)
        if cfg.intermediate.format == "realfake":
            check_generator(cfg)


def check_max_length(task, tokenizer, role: str) -> None:
    """max_length must leave room for at least one text token after the special tokens, and fit the
    encoder's position table (past it, the embedding lookup fails deep inside the model)."""
    value = task.get("max_length")
    specials = tokenizer.num_special_tokens_to_add(pair=len(task.get("fields") or []) > 1
                                                   or task.get("kind") == "multiple_choice")
    if not _is_integer(value) or value <= specials:
        _fail(f"{role}.max_length", value, f"an integer above {specials} (the tokenizer's special tokens)")
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 1_000_000 and value > limit:  # huge: the tokenizer sets no limit
        _fail(f"{role}.max_length", value, f"at most {limit}, the encoder's longest input")
