"""Identity: what determines a result, hashed in one place, so that every cache and the report agree.

One hashing helper (`digest`), one declared list of the settings that never change a result
(`NEVER_CHANGES_RESULT`), and one small function per key:
- `config_hash`: a trial (what resume, the report and metrics.json call the same trial);
- `intermediate_key`: an intermediate checkpoint (the cache a sweep's trials share);
- `tokenization_key` / `tokenizer_identity`: a tokenized split (the datasets cache);
- `realfake_build_key`: a built real-fake set (its spec covers generator, sampling and sources).
Data files enter every key by content (sha256), never by path: the same data under another root is
the same result, an edited file is not."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

from omegaconf import DictConfig, OmegaConf

# Settings that change where a trial runs or writes, how fast it runs or what it prints, never its
# result. Dotted config keys; a key names its whole subtree. Every key below leaves them out, and
# the report does not read them as settings that tell arms apart (report/arms.py).
NEVER_CHANGES_RESULT = (
    "paths", "hydra", "logger", "output_dir", "resume", "require_prepared", "prepare",
    "trainer.num_threads", "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.pin_memory",
    "trainer.malloc_mmap_threshold", "trainer.malloc_trim_every_n_steps", "trainer.profiler",
    "trainer.isolate_intermediate",
    "data.num_workers",
)
# Path keys of a task: the content of the files they name is hashed instead (see data_hashes).
TASK_PATH_KEYS = ("files", "sources")
# Bump when the intermediate stage's training changes meaning: every cached checkpoint is retrained.
INTERMEDIATE_VERSION = "2"
# Bump when the token ids a tokenized split holds change (not for a change of storage format).
TOKENIZATION_VERSION = "1"
# Bump when a change to the real-fake recipe changes what a given config builds: old caches stop matching.
RECIPE_VERSION = 4  # 4: fakes sampled by synth/decode.py (issue #38); 3 and below: generate()


def digest(payload) -> str:
    """The one hash: sha256 of the payload's canonical JSON (sorted keys), first 16 hex digits."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.get(part)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def _without(tree: dict, keys) -> dict:
    for key in keys:
        _drop(tree, key)
    return tree


def result_settings(cfg: DictConfig) -> dict:
    """The resolved config minus NEVER_CHANGES_RESULT and the tasks' file paths (their content is
    hashed into data_files instead)."""
    task_paths = (f"{role}.{k}" for role in ("target", "intermediate") for k in TASK_PATH_KEYS)
    return _without(OmegaConf.to_container(cfg, resolve=True), (*NEVER_CHANGES_RESULT, *task_paths))


def code_versions(cfg: DictConfig) -> dict:
    """The version constants of the code that a trial's result depends on: a bump retrains or rebuilds
    every cache it names, so a trial run before it is another trial (resume must not keep it)."""
    uses = {role: (cfg.get(role) or {}).get("format") for role in ("target", "intermediate")}
    versions = {"tokenization": TOKENIZATION_VERSION}
    if (cfg.get("intermediate") or {}).get("name") not in (None, "none"):
        versions["intermediate"] = INTERMEDIATE_VERSION
    if "realfake" in uses.values():
        versions["recipe"] = RECIPE_VERSION
    return versions


def config_hash(cfg: DictConfig, checkpoint_key: str | None = None) -> str:
    """A trial: every setting that determines its result, the content of every data file it reads
    (data_hashes), the code versions behind it (code_versions) and, given, the key of the intermediate
    checkpoint it starts from (which also covers what the config does not say: a real-fake set's
    generator weights). Not where it runs or writes, nor how fast (NEVER_CHANGES_RESULT), nor the
    settings of what does not run: vanilla's intermediate block (else a sweep over intermediate.seed
    would train vanilla once per seed) and the generator where no stage is built by it."""
    settings = result_settings(cfg)
    if (settings.get("intermediate") or {}).get("name") == "none":
        settings["intermediate"] = {"name": "none"}
    if not any((settings.get(role) or {}).get("format") == "realfake" for role in ("target", "intermediate")):
        settings.pop("generator", None)
    extra = {"data_files": data_hashes(cfg), "code": code_versions(cfg)}
    if checkpoint_key is not None:
        extra["intermediate_checkpoint"] = checkpoint_key
    return digest(settings | extra)


def intermediate_key(cfg: DictConfig, data_parts: list[str]) -> str:
    """An intermediate checkpoint: the model, the intermediate task and its data (`data_parts`: file
    hashes or a built set's key), its stage settings (its training method among them: intermediate.method
    with its settings for lora or bitfit; method full adds nothing, so today's keys stand) and how it is
    trained (gradient clipping, accelerator, precision, fused or compiled kernels...), and
    data.split_seed, which carves shared files and draws the stage's subsets. Not the target stage's
    settings (its epochs, optim, seed, task, method), nor NEVER_CHANGES_RESULT."""
    settings = result_settings(cfg)
    trainer = settings["trainer"]
    trainer.pop("max_epochs", None)  # the target stage's; the intermediate stage has its own
    return digest({"v": INTERMEDIATE_VERSION, "model": settings["model"], "intermediate": settings["intermediate"],
                   "trainer": trainer, "data": data_parts, "split_seed": int(cfg.data.split_seed)})


def tokenizer_identity(tokenizer) -> str:
    """A tokenizer by content, not name: two folders holding the same tokenizer share a cache entry.
    The backend's truncation and padding are left out: every call sets them anew (the last call's
    settings stay in to_str()), and tokenization passes its own, so they never change the ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:
        state = tokenizer.get_vocab()
    return digest({"class": type(tokenizer).__name__, "state": state})


def tokenization_key(*, tokenizer_id: str, max_length: int, kind: str, task_def: dict, source_parts: list[str]) -> str:
    """A tokenized split: the tokenizer (tokenizer_identity), the length cut, the task kind and
    definition (fields, choices, labels), and its source rows (file hashes and how they were carved)."""
    return digest({"v": TOKENIZATION_VERSION, "tok": tokenizer_id, "max_length": max_length, "kind": kind,
                   "task": task_def, "sources": source_parts})


def realfake_build_key(spec: Mapping) -> str:
    """A built real-fake set: its spec (synth: generator and its dtype, sampling, recipe, sizes,
    seed and the sources' sha256) is exactly what determines the examples."""
    return digest(dict(spec))


def data_hashes(cfg: DictConfig) -> dict[str, str]:
    """sha256 of every data file the trial reads (target and intermediate, including label files
    read by transforms), keyed by stage and role. A missing file is left out; the run reports it."""
    from stilts_lab.data.task_files import task_files

    data_dir = cfg.paths.get("data_dir")
    hashes = {}
    for role in ("target", "intermediate"):
        task = cfg.get(role)
        if task is None or task.get("name") == "none" or data_dir is None:
            continue
        for label, path in task_files(OmegaConf.to_container(task, resolve=True), data_dir).items():
            sha = cached_file_sha256(path)
            if sha:
                hashes[f"{role}.{label}"] = sha
    return hashes


_SHA_CACHE: dict[tuple, str] = {}


def cached_file_sha256(path: Path) -> str | None:
    """A sweep hashes the same files for every trial: remember them by (path, size, mtime)."""
    from stilts_lab.data.readers import file_sha256
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        try:
            _SHA_CACHE[key] = file_sha256(path)
        except OSError:  # unreadable: reading it for the run will say so, naming the file
            return None
    return _SHA_CACHE[key]
