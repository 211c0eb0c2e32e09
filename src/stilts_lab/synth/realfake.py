"""Real-vs-fake sentence endings (the paper's SynGPT2), built once per key and cached.

Recipe: split prose on ". ", cut each sentence to its first `words_max` words, drop it below
`words_min`; the prompt is the first half of the words, the real ending the second half minus the
last word. The generator writes `num_fakes` endings per prompt with the real ending's token budget.
The real ending's position is shuffled per example (the original code always put it first).
With fakes=controlled, fakes match the real endings' surface (synth/controlled.py). Every build is
audited for give-aways (synth/audit.py); the audit goes into provenance.json and the log."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from filelock import FileLock

from stilts_lab.data.readers import file_sha256, read_squad_paragraphs, read_text_paragraphs
from stilts_lab.errors import ConfigError, DataError
from stilts_lab.synth.audit import audit_rows, format_audit
from stilts_lab.synth.controlled import (BALANCED_FEATURES, OVERSAMPLE, BanTokens, balance_ranks, controlled_budget,
                                         fit_to_words, sentence_ender_ids, strip_edges)
from stilts_lab.synth.generator import resolve_dtype

log = logging.getLogger(__name__)
# paper: the paper's recipe (fakes get the real ending's token budget, nothing else controlled);
# controlled: fakes that share the real endings' surface (see synth/controlled.py).
FAKES = ("paper", "controlled")

# Bump when a change to this file changes what a given config builds: old caches stop matching.
RECIPE_VERSION = 3
# Samples tried per fake slot before its sentence is swapped for a spare one.
MAX_ATTEMPTS = 5
EXAMPLES_FILE, PROVENANCE_FILE = "examples.jsonl", "provenance.json"


@dataclass(frozen=True)
class Sentence:
    prompt: str
    ending: str
    source: str  # "<file name>#<paragraph index>"


def clean_text(text: str) -> str:
    """The one normalisation for real and fake endings alike. SmolLM2 often writes a newline into
    a long ending; a choice with a line break (or a double space) would give the fake away."""
    return " ".join(text.split())


def split_sentence(sentence: str, words_max: int, words_min: int) -> tuple[str, str] | None:
    """(prompt, real ending), or None for a sentence too short to use."""
    words = clean_text(sentence).split()[:words_max]
    if len(words) < words_min:
        return None
    half = len(words) // 2
    return " ".join(words[:half]), " ".join(words[half:-1])


def candidate_sentences(sources: Sequence[Path], words_max: int, words_min: int) -> list[Sentence]:
    """Every usable sentence, in file order; exact repeats dropped so that no prompt can land in
    both the training and the held-out part."""
    sentences, seen = [], set()
    for path in map(Path, sources):
        read = read_squad_paragraphs if path.suffix == ".json" else read_text_paragraphs
        for index, paragraph in enumerate(read(path)):
            for text in paragraph.split(". "):
                pair = split_sentence(text, words_max, words_min)
                if pair and pair not in seen:
                    seen.add(pair)
                    sentences.append(Sentence(*pair, source=f"{path.name}#{index}"))
    return sentences


def ending_tokens(tokenizer, ending: str) -> int:
    """Generator tokens in `ending` as written right after its prompt (hence the leading space)."""
    return len(tokenizer(" " + ending, add_special_tokens=False).input_ids)


def derive_seed(seed: int, *parts) -> int:
    """A seed for one generate() call that depends only on the build seed and the call's place."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class NucleusSampling:
    """transformers' temperature, top-k and top-p warpers in one logits processor, without sorting the
    whole vocabulary every step: on CPU that sort (49k tokens per sequence) costs about as much as the
    model's forward pass. The nucleus nearly always lies within the top `candidates` tokens, which
    topk finds ~10x faster; rows where it does not (a flat distribution) fall back to a full sort."""

    def __init__(self, top_p: float, top_k: int = 0, temperature: float = 1.0, candidates: int = 1024):
        self.top_p, self.top_k, self.temperature, self.candidates = top_p, top_k, temperature, candidates

    def __call__(self, input_ids, scores):
        import torch

        scores = scores / self.temperature
        if self.top_p >= 1.0 and not self.top_k:
            return scores
        top_p = self.top_p if self.top_p < 1.0 else float("inf")  # top-k only: rounding must not cut
        k = min(self.top_k or self.candidates, scores.shape[-1])
        logits, index = scores.topk(k, dim=-1)  # largest first
        # With a top-k cut, top-p acts on the renormalised top k (as in transformers); else on all tokens.
        probs = logits.softmax(-1) if self.top_k else (logits - scores.logsumexp(-1, keepdim=True)).exp()
        remove = torch.ones_like(scores, dtype=torch.bool)
        # A token stays while the mass ranked above it is under top_p (so the first always stays).
        remove.scatter_(-1, index, (probs.cumsum(-1) - probs) >= top_p)
        wide = probs.sum(-1) < top_p  # nucleus reaches past the candidates (never with a top-k cut)
        if not self.top_k and wide.any():
            probs, index = scores[wide].softmax(-1).sort(-1, descending=True)
            remove[wide] = torch.ones_like(probs, dtype=torch.bool).scatter_(
                -1, index, (probs.cumsum(-1) - probs) >= top_p)
        return scores.masked_fill(remove, float("-inf"))


def sample_endings(model, tokenizer, prompts: Sequence[str], budgets: Sequence[int], *, num_fakes: int,
                   gen_cfg: Mapping, seed: int, batch_size: int, progress=None,
                   processors: Sequence = ()) -> list[list[str]]:
    """`num_fakes` cleaned continuations per prompt, each cut to at most that prompt's budget.

    Prompts are sorted by (budget, prompt length) and cut into batches of `batch_size`, so one
    generate() call holds prompts of near-equal length (little left padding) and near-equal budget.
    Each call generates its largest budget, with EOS suppressed (min_new_tokens), and each row is
    cut to its own budget: sampling is left to right, so a cut sample is a sample of that length.
    batch_size=1 is the original code's one-prompt-per-call loop. `processors` (e.g. a token ban)
    run before nucleus sampling."""
    import torch
    from transformers import LogitsProcessorList

    prompt_lengths = [len(ids) for ids in tokenizer(list(prompts)).input_ids]
    order = sorted(range(len(prompts)), key=lambda i: (budgets[i], prompt_lengths[i]))
    results: list[list[str]] = [[] for _ in prompts]
    # Sampling is all in NucleusSampling: generate() gets neutral values so it adds no warpers of its own.
    nucleus = NucleusSampling(top_p=float(gen_cfg["top_p"]), top_k=int(gen_cfg.get("top_k") or 0),
                              temperature=float(gen_cfg["temperature"]))
    devices = [model.device] if model.device.type == "cuda" else []
    # fork_rng: seeding here must not disturb the caller's random state.
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        for call, start in enumerate(range(0, len(order), batch_size)):
            batch = order[start:start + batch_size]
            encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(model.device)
            budget = max(budgets[i] for i in batch)
            torch.manual_seed(derive_seed(seed, call))
            sequences = model.generate(
                **encoded, do_sample=True, top_p=1.0, top_k=0, temperature=1.0,
                logits_processor=LogitsProcessorList([*processors, nucleus]), min_new_tokens=budget, max_new_tokens=budget,
                num_return_sequences=num_fakes, pad_token_id=tokenizer.pad_token_id)
            new_tokens = sequences[:, encoded.input_ids.shape[1]:]
            for row, i in enumerate(batch):  # generate() returns a prompt's samples consecutively
                samples = new_tokens[row * num_fakes:(row + 1) * num_fakes, :budgets[i]]
                results[i] = [clean_text(t) for t in tokenizer.batch_decode(samples, skip_special_tokens=True)]
            if progress is not None:
                progress.update(len(batch))
    return results


def _usable(fake: str, real: str, budget: int | None, tokenizer) -> bool:
    # An empty fake, or one equal to the real ending, makes a trivial or unanswerable example;
    # U+FFFD (a cut multi-byte character) and over-budget text are tells real endings never have.
    # Controlled fakes (budget None) are held to the real ending's word count instead.
    return (bool(fake) and fake != real and "\ufffd" not in fake
            and (budget is None or ending_tokens(tokenizer, fake) <= budget))


def _fit_controlled(samples: list[str], real: str, counts: dict) -> list[str]:
    """Samples cut to the real ending's word count (edges stripped); short ones are dropped, to be
    drawn again, and counted."""
    words, fitted, short = len(real.split()), [], 0
    for sample in samples:
        fake, cut = fit_to_words(sample, words)
        if len(fake.split()) < words:
            short += 1
            continue
        counts["cut_fakes"] += cut
        fitted.append(fake)
    counts["resampled_fakes"] += short
    return fitted


def _generator_identity(gen_cfg: Mapping) -> dict:
    from stilts_lab.synth.generator import find_gguf

    gguf = find_gguf(gen_cfg)
    # The weights actually used: the embedded GGUF if installed, else the Hub model.
    weights = f"{gguf.name} ({gguf.stat().st_size} bytes)" if gguf else gen_cfg.get("hub_id")
    return {"name": gen_cfg["name"], "hub_id": gen_cfg.get("hub_id"),
            "gguf_file": gen_cfg.get("gguf_file"), "weights": weights}


def build_spec(*, gen_cfg: Mapping, sources: Sequence[Path], num_examples: int, num_fakes: int, seed: int,
               words_max: int = 30, words_min: int = 20, device: str = "cpu", fakes: str = "paper") -> dict:
    """Everything that determines what a build writes; its hash is the build's cache key."""
    sources = [Path(s) for s in sources]
    for path in sources:
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
    if fakes not in FAKES:
        raise ConfigError(f"intermediate.fakes must be one of {', '.join(FAKES)}, got {fakes!r}")
    sampling = {k: gen_cfg[k] for k in ("top_p", "top_k", "temperature", "batch_size")}
    return {"recipe_version": RECIPE_VERSION, "generator": _generator_identity(gen_cfg), "sampling": sampling,
            # Every generator setting, so that any change to the generator config builds a new set;
            # dtype as resolved here (auto depends on the hardware), since it changes the samples.
            "generator_config": dict(gen_cfg), "dtype": resolve_dtype(gen_cfg.get("dtype"), device), "fakes": fakes,
            "balance": {"features": list(BALANCED_FEATURES), "oversample": OVERSAMPLE} if fakes == "controlled" else None, "seed": seed, "num_examples": num_examples,
            "num_fakes": num_fakes, "words_max": words_max, "words_min": words_min,
            "sources": [file_sha256(p) for p in sources],
            # Samples differ across devices (kernels, RNG), so a device builds its own copy.
            "device": str(device).split(":")[0]}


def spec_key(spec: Mapping) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_realfake(*, gen_cfg: Mapping, sources: Sequence[Path], num_examples: int, num_fakes: int, seed: int,
                   cache_dir: Path, words_max: int = 30, words_min: int = 20, device: str = "cpu",
                   fakes: str = "paper") -> Path:
    """Build (or find in the cache) the real-fake set; returns its folder holding examples.jsonl
    (prompt, endings, label, source per line) and provenance.json (with the artifact audit)."""
    sources = [Path(s) for s in sources]
    spec = build_spec(gen_cfg=gen_cfg, sources=sources, num_examples=num_examples, num_fakes=num_fakes, seed=seed,
                      words_max=words_max, words_min=words_min, device=device, fakes=fakes)
    final = Path(cache_dir) / "realfake" / spec_key(spec)
    if (final / EXAMPLES_FILE).is_file() and (final / PROVENANCE_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if not final.is_dir():  # another process may have built it while we waited
            _build(final, spec, gen_cfg, sources, cache_dir, device)
    return final


def _sample_fakes(model, tokenizer, chosen: list[Sentence], spares, *, num_fakes: int, gen_cfg: Mapping,
                  seed: int, controlled: bool = False) -> tuple[list[Sentence], list[list[str]], dict]:
    """`num_fakes` usable fakes for each chosen sentence. Unusable samples are redrawn in later rounds;
    a sentence the generator keeps failing on (e.g. one it recites) is swapped for the next spare.
    Controlled: sentence-ending tokens banned, a larger budget, each sample cut to the real ending's
    word count with its edges stripped; a sample short of that count is drawn again."""
    from tqdm.auto import tqdm

    n, k = len(chosen), num_fakes
    processors = [BanTokens(sentence_ender_ids(tokenizer), len(tokenizer))] if controlled else []

    def budget(sentence: Sentence) -> int:
        tokens = ending_tokens(tokenizer, sentence.ending)
        return controlled_budget(tokens) if controlled else tokens

    budgets = [budget(s) for s in chosen]
    fakes: list[list[str]] = [[] for _ in range(n)]
    attempts = [0] * n
    # rejected_fakes: samples discarded as unusable (and drawn again); replaced_sentences: spares used.
    counts = {"generated_sequences": 0, "rejected_fakes": 0, "replaced_sentences": 0}
    if controlled:
        # constrained: sampled under the sentence-end ban; cut: longer than the real ending, cut to its
        # word count; resampled: short of it, drawn again.
        counts.update(constrained_sequences=0, cut_fakes=0, resampled_fakes=0)
    round_ = 0
    with tqdm(total=n, desc="real-fake endings", unit="example") as bar:
        while todo := [i for i in range(n) if len(fakes[i]) < k]:
            # Retry rounds resample whole prompts: rejects are rare, so simplicity beats saved compute.
            samples = sample_endings(model, tokenizer, [chosen[i].prompt for i in todo], [budgets[i] for i in todo],
                                     num_fakes=k, gen_cfg=gen_cfg, seed=derive_seed(seed, "round", round_),
                                     batch_size=int(gen_cfg["batch_size"]), progress=bar if round_ == 0 else None,
                                     processors=processors)
            counts["generated_sequences"] += k * len(todo)
            round_ += 1
            for i, new in zip(todo, samples):
                if controlled:
                    counts["constrained_sequences"] += len(new)
                    new = _fit_controlled(new, chosen[i].ending, counts)
                    usable = [f for f in new if _usable(f, chosen[i].ending, None, tokenizer)]
                    counts["rejected_fakes"] += len(new) - len(usable)
                else:
                    usable = [f for f in new if _usable(f, chosen[i].ending, budgets[i], tokenizer)]
                    counts["rejected_fakes"] += len(new) - len(usable)
                fakes[i] += usable[:k - len(fakes[i])]
                attempts[i] += 1
                if len(fakes[i]) < k and attempts[i] >= MAX_ATTEMPTS:
                    counts["replaced_sentences"] += 1
                    chosen[i] = next(spares, None)
                    # Failing on many sentences means broken sampling settings: stop rather than loop on.
                    if chosen[i] is None or counts["replaced_sentences"] > MAX_ATTEMPTS + n // 10:
                        raise ConfigError(f"generator {gen_cfg['name']}: after {MAX_ATTEMPTS} tries each, no usable "
                                          f"fakes (non-empty, not the real ending) for "
                                          f"{counts['replaced_sentences']} sentences; check generator.top_p and "
                                          "generator.temperature")
                    budgets[i], fakes[i], attempts[i] = budget(chosen[i]), [], 0
    return chosen, fakes, counts


def _build(final: Path, spec: dict, gen_cfg: Mapping, sources: list[Path], cache_dir: Path, device: str) -> None:
    import torch
    import transformers

    from stilts_lab.synth.generator import load_generator

    started = time.perf_counter()
    seed, n, k = spec["seed"], spec["num_examples"], spec["num_fakes"]
    if k < 1:
        raise ConfigError(f"intermediate.num_fakes must be at least 1, got {k}")
    controlled = spec["fakes"] == "controlled"
    # Controlled sets build a surplus, from which balancing keeps n (see controlled.balance_ranks).
    keep, n = n, math.ceil(n * OVERSAMPLE) if controlled else n
    candidates = candidate_sentences(sources, spec["words_max"], spec["words_min"])
    if len(candidates) < n:
        raise DataError(f"real-fake needs {n} sentences of {spec['words_min']}+ words, found "
                        f"{len(candidates)} in {', '.join(map(str, sources))}")
    rng = random.Random(seed)
    rng.shuffle(candidates)
    labels = [rng.randrange(k + 1) for _ in range(n)]

    real_stripped = 0
    if controlled:  # real endings lose edge punctuation too, so that no edge tells them apart
        real_stripped = sum(strip_edges(s.ending) != s.ending for s in candidates[:n])
        candidates = [replace(s, ending=strip_edges(s.ending)) for s in candidates]
    model, tokenizer = load_generator(gen_cfg, cache_dir, device)
    setup_seconds = time.perf_counter() - started  # reading sources + loading the generator
    chosen, fakes, counts = _sample_fakes(model, tokenizer, candidates[:n], iter(candidates[n:]),
                                          num_fakes=k, gen_cfg=gen_cfg, seed=seed, controlled=controlled)
    if controlled:
        counts["real_endings_edge_stripped"] = real_stripped
    generate_seconds = time.perf_counter() - started - setup_seconds

    rows = []
    for sentence, label, endings in zip(chosen, labels, fakes):
        endings = endings[:label] + [sentence.ending] + endings[label:]
        rows.append({"prompt": sentence.prompt, "endings": endings, "label": label, "source": sentence.source})
    if controlled:
        rows = balance_ranks(rows, keep, seed)
        counts["balance_dropped"] = n - keep
    audit = audit_rows(rows, seed=seed)
    log.info("real-fake set %s (fakes: %s)\n%s", final.name, spec["fakes"], format_audit(audit))
    provenance = {
        "key": final.name, **spec,
        "generator": {**spec["generator"], "embedded_package": gen_cfg.get("embedded_package")},
        "source_files": [{"file": str(p), "sha256": h} for p, h in zip(sources, spec["sources"])],
        "counts": {"candidate_sentences": len(candidates), "examples": len(rows), **counts},
        "seconds": round(time.perf_counter() - started, 2), "setup_seconds": round(setup_seconds, 2),
        "sequences_per_second": round(counts["generated_sequences"] / max(generate_seconds, 1e-9), 2),
        "audit": audit,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }

    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp"))
    try:
        with (tmp / EXAMPLES_FILE).open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
        os.replace(tmp, final)  # complete or absent: a crash leaves only a dot-named temp folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_from_config(cfg) -> Path:
    """build_realfake from a composed Hydra config (cfg.generator, cfg.intermediate, cfg.paths)."""
    from omegaconf import OmegaConf

    from stilts_lab.devices import torch_device

    if cfg.paths.data_dir is None:
        raise DataError("paths.data_dir is not set: set STILTS_DATA_DIR (or paths.data_dir) to a folder "
                        "holding the squad/ and wikitext2/ files")
    task = cfg.intermediate
    if task.get("format") != "realfake":
        raise ConfigError(f"intermediate={task.get('name')} is not a real-fake task (format: realfake); "
                          "select intermediate=realfake")
    if task.train_size is None:
        raise ConfigError("intermediate.train_size is null: set it to the number of real-fake training "
                          "examples to build, e.g. intermediate.train_size=2000")
    data_dir = Path(cfg.paths.data_dir)
    return build_realfake(
        gen_cfg=OmegaConf.to_container(cfg.generator, resolve=True),
        sources=[data_dir / s for s in task.sources],
        num_examples=int(task.train_size) + int(task.eval_size or 0),
        num_fakes=int(task.num_fakes), seed=int(task.seed), cache_dir=Path(cfg.paths.cache_dir),
        words_max=int(task.words_max), words_min=int(task.words_min),
        device=torch_device(cfg.trainer.accelerator), fakes=str(task.get("fakes") or "paper"))
