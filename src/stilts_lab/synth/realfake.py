"""Real-vs-fake sentence endings (the paper's SynGPT2): one build per key, cached, with its provenance.

Recipe (synth/sentences.py): split prose on ". ", cut each sentence to its first `words_max` words,
drop it below `words_min`; the prompt is the first half of the words, the real ending the second
half minus the last word. The real ending's position is shuffled per example (the original code
always put it first). How the other choices are made is `fakes`:
  paper       the generator writes `num_fakes` endings per prompt with the real ending's token budget;
  controlled  fakes that match the real endings' surface (synth/controlled.py), optionally chosen
              from a larger pool by adversarial filtering (synth/filtering.py);
  swapped     no generator: real endings of other sentences, matched on word count (synth/swapped.py).
Every build is audited for give-aways (synth/audit.py); the audit goes into provenance.json and the log."""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from filelock import FileLock

from stilts_lab.errors import ConfigError, DataError
from stilts_lab.identity import realfake_build_key
from stilts_lab.memory import release_freed_memory, run_isolated
from stilts_lab.synth.audit import audit_rows, format_audit
from stilts_lab.synth.controlled import OVERSAMPLE, balance_ranks, strip_edges
from stilts_lab.synth.fakes import sample_fakes
from stilts_lab.synth.filtering import adversarial_filter, assemble
from stilts_lab.synth.sentences import Sentence, candidate_sentences
from stilts_lab.synth.spec import build_spec, check_filter
from stilts_lab.synth.swapped import swapped_fakes

log = logging.getLogger(__name__)
EXAMPLES_FILE, PROVENANCE_FILE = "examples.jsonl", "provenance.json"


def build_realfake(*, gen_cfg: Mapping, sources: Sequence[Path], num_examples: int, num_fakes: int, seed: int,
                   cache_dir: Path, words_max: int = 30, words_min: int = 20, device: str = "cpu",
                   fakes: str = "paper", adversarial_filter: Mapping | None = None, isolate: bool = False) -> Path:
    """Build (or find in the cache) the real-fake set; returns its folder holding examples.jsonl
    (prompt, endings, label, source per line) and provenance.json (with the artifact audit).
    isolate: build in a child process, so that none of the generator's memory stays with the caller
    (memory.run_isolated; the pipeline's builds, where MiniLM trains next in the same process)."""
    sources = [Path(s) for s in sources]
    spec = build_spec(gen_cfg=gen_cfg, sources=sources, num_examples=num_examples, num_fakes=num_fakes, seed=seed,
                      words_max=words_max, words_min=words_min, device=device, fakes=fakes,
                      adversarial_filter=adversarial_filter)
    final = Path(cache_dir) / "realfake" / realfake_build_key(spec)
    if (final / EXAMPLES_FILE).is_file() and (final / PROVENANCE_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if not final.is_dir():  # another process may have built it while we waited
            args = (final, spec, dict(gen_cfg), sources, Path(cache_dir), device)
            if isolate:
                audit = run_isolated(_build, *args)
            else:
                audit = _build(*args)
                release_freed_memory()  # the generator left with _build's locals: its heap goes back too
            log.info("real-fake set %s (fakes: %s)\n%s", final.name, spec["fakes"], format_audit(audit))
    return final


def _choose(spec: dict, sources: list[Path]) -> tuple[list[Sentence], list[Sentence], list[int], int]:
    """(the sentences to build on, the spares, each example's label, how many examples to keep)."""
    seed, n, k = spec["seed"], spec["num_examples"], spec["num_fakes"]
    if k < 1:
        raise ConfigError(f"intermediate.num_fakes must be at least 1, got {k}")
    # Controlled sets build a surplus, from which balancing keeps n (see controlled.balance_ranks).
    keep, n = n, math.ceil(n * OVERSAMPLE) if spec["fakes"] == "controlled" else n
    candidates = candidate_sentences(sources, spec["words_max"], spec["words_min"])
    # Swapped sets take their distractors from sentences outside the set: k of them per example.
    needed = n * (k + 1) if spec["fakes"] == "swapped" else n
    if len(candidates) < needed:
        raise DataError(f"real-fake needs {needed} sentences of {spec['words_min']}+ words, found "
                        f"{len(candidates)} in {', '.join(map(str, sources))}")
    rng = random.Random(seed)
    rng.shuffle(candidates)
    labels = [rng.randrange(k + 1) for _ in range(n)]
    return candidates[:n], candidates[n:], labels, keep


def _build(final: Path, spec: dict, gen_cfg: Mapping, sources: list[Path], cache_dir: Path, device: str) -> dict:
    """Write the set into `final`; returns its audit (for the caller's log: a child's log is not Hydra's)."""
    started = time.perf_counter()
    seed, k = spec["seed"], spec["num_fakes"]
    chosen, spares, labels, keep = _choose(spec, sources)
    counts, extra = {"candidate_sentences": len(chosen) + len(spares)}, {}
    if spec["fakes"] == "swapped":
        fakes = swapped_fakes(chosen, spares, num_fakes=k, seed=seed)
        timing = {"setup_seconds": round(time.perf_counter() - started, 2)}
    else:
        chosen, fakes, timing, extra = _generate(spec, gen_cfg, chosen, spares, labels, cache_dir, device, counts)
    rows = [dict(row, source=s.source)
            for row, s in zip(assemble([s.prompt for s in chosen], [s.ending for s in chosen], fakes, labels), chosen)]
    if spec["fakes"] == "controlled":
        rows = balance_ranks(rows, keep, seed)
        counts["balance_dropped"] = len(chosen) - keep
    audit = audit_rows(rows, seed=seed)
    seconds = time.perf_counter() - started
    provenance = {
        "key": final.name, **spec,
        "source_files": [{"file": str(p), "sha256": h} for p, h in zip(sources, spec["sources"])],
        "counts": {**counts, "examples": len(rows)},
        "seconds": round(seconds, 2), "seconds_per_example": round(seconds / len(rows), 3), **timing, **extra,
        "audit": audit, "versions": _versions(),
    }
    if "generator" in spec:
        provenance["generator"] = {**spec["generator"], "embedded_package": gen_cfg.get("embedded_package")}
    _write_set(final, rows, provenance)
    return audit


def _generate(spec, gen_cfg, chosen, spares, labels, cache_dir, device, counts) -> tuple[list, list, dict, dict]:
    """Fakes from the generator: (chosen sentences, fakes, timing, the filter's report if any)."""
    from stilts_lab.synth.generator import load_generator

    started = time.perf_counter()
    controlled, filtering, k = spec["fakes"] == "controlled", spec.get("adversarial_filter"), spec["num_fakes"]
    if controlled:  # real endings lose edge punctuation too, so that no edge tells them apart
        counts["real_endings_edge_stripped"] = sum(strip_edges(s.ending) != s.ending for s in chosen)
        chosen = [replace(s, ending=strip_edges(s.ending)) for s in chosen]
        spares = [replace(s, ending=strip_edges(s.ending)) for s in spares]
    model, tokenizer = load_generator(gen_cfg, cache_dir, device)
    setup = time.perf_counter() - started  # reading sources + loading the generator
    pool = filtering["pool"] if filtering else k
    chosen, fakes, sampled = sample_fakes(model, tokenizer, chosen, iter(spares), num_fakes=pool, gen_cfg=gen_cfg,
                                          seed=spec["seed"], controlled=controlled,
                                          recipe_version=spec["recipe_version"])
    counts.update(sampled)
    generate = time.perf_counter() - started - setup
    timing = {"setup_seconds": round(setup, 2), "generate_seconds": round(generate, 2),
              "sequences_per_second": round(counts["generated_sequences"] / max(generate, 1e-9), 2)}
    if not filtering:
        return chosen, fakes, timing, {}
    # Distinct candidates only (a pool with fewer distinct ones than k keeps its repeats).
    pools = [distinct if len(distinct := list(dict.fromkeys(p))) >= k else p for p in fakes]
    fakes, report = adversarial_filter([s.prompt for s in chosen], [s.ending for s in chosen], pools, labels,
                                       num_fakes=k, rounds=filtering["rounds"], seed=spec["seed"])
    report["pool"] = pool
    # The cost against the plain recipe: sampling k instead of `pool` per prompt, and no filter.
    timing["filter_seconds"] = report["seconds"]
    timing["plain_generate_seconds_estimate"] = round(generate * k / pool, 2)
    return chosen, fakes, timing, {"adversarial_filter_report": report}


def _versions() -> dict:
    import sklearn
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "scikit-learn": sklearn.__version__}


def _write_set(final: Path, rows: list[dict], provenance: dict) -> None:
    """examples.jsonl and provenance.json, published by one rename: a crash leaves only a dot-named temp folder."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp"))
    try:
        with (tmp / EXAMPLES_FILE).open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_arguments(cfg, role: str = "intermediate") -> dict:
    """build_realfake's arguments from a composed Hydra config: the task cfg.<role> (intermediate or
    target), with cfg.generator and cfg.paths. An intermediate set is seeded by intermediate.seed; a
    target set, which every trial of a grid must share, by data.split_seed (as the target's carve is)."""
    from omegaconf import OmegaConf

    from stilts_lab.devices import torch_device

    if cfg.paths.data_dir is None:
        raise DataError("paths.data_dir is not set: set STILTS_DATA_DIR (or paths.data_dir) to a folder "
                        "holding the squad/ and wikitext2/ files")
    task = cfg[role]
    if task.get("format") != "realfake":
        raise ConfigError(f"{role}={task.get('name')} is not a real-fake task (format: realfake); "
                          f"select {role}=realfake")
    if task.train_size is None:
        raise ConfigError(f"{role}.train_size is null: set it to the number of real-fake training "
                          f"examples to build, e.g. {role}.train_size=2000")
    fakes = str(task.get("fakes") or "paper")
    filtering = task.get("adversarial_filter")
    filtering = OmegaConf.to_container(filtering) if filtering is not None else None
    check_filter(filtering, int(task.num_fakes), fakes, role)
    seed = task.seed if role == "intermediate" else cfg.data.split_seed
    data_dir = Path(cfg.paths.data_dir)
    return dict(
        gen_cfg=OmegaConf.to_container(cfg.generator, resolve=True),
        sources=[data_dir / s for s in task.sources],
        num_examples=int(task.train_size) + int(task.eval_size or 0),
        num_fakes=int(task.num_fakes), seed=int(seed), cache_dir=Path(cfg.paths.cache_dir),
        words_max=int(task.words_max), words_min=int(task.words_min),
        device=torch_device(cfg.trainer.accelerator), fakes=fakes, adversarial_filter=filtering)


def build_from_config(cfg, role: str = "intermediate") -> Path:
    """build_realfake from a composed Hydra config (build_arguments), in a child process."""
    return build_realfake(**build_arguments(cfg, role), isolate=True)


def key_from_config(cfg, role: str = "intermediate") -> str:
    """The cache key (folder name) of the set build_from_config builds, without building it."""
    args = build_arguments(cfg, role)
    args.pop("cache_dir")
    return realfake_build_key(build_spec(**args))
