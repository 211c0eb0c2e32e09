"""What determines a real-fake build, and its hash: the build's cache key."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from stilts_lab.data.readers import file_sha256
from stilts_lab.errors import ConfigError, DataError
from stilts_lab import identity
from stilts_lab.synth.controlled import BALANCED_FEATURES, OVERSAMPLE
from stilts_lab.synth.generator import resolve_dtype

# paper: the paper's recipe (fakes get the real ending's token budget, nothing else controlled);
# controlled: fakes that share the real endings' surface (see synth/controlled.py);
# swapped: no generator, the distractors are real endings of other sentences (see synth/swapped.py).
FAKES = ("paper", "controlled", "swapped")
GENERATED = ("paper", "controlled")



def _generator_identity(gen_cfg: Mapping) -> dict:
    from stilts_lab.synth.generator import find_gguf

    gguf = find_gguf(gen_cfg)
    # The weights actually used: the embedded GGUF if installed, else the Hub model.
    weights = f"{gguf.name} ({gguf.stat().st_size} bytes)" if gguf else gen_cfg.get("hub_id")
    return {"name": gen_cfg["name"], "hub_id": gen_cfg.get("hub_id"),
            "gguf_file": gen_cfg.get("gguf_file"), "weights": weights}


def check_filter(adversarial_filter: Mapping | None, num_fakes: int, fakes: str,
                 role: str = "intermediate") -> dict | None:
    """adversarial_filter as {pool, rounds} (ints), or None when off; a bad value names the key."""
    if not adversarial_filter:
        return None
    if fakes not in GENERATED:
        raise ConfigError(f"{role}.adversarial_filter filters generated fakes; fakes={fakes} has none: "
                          "set adversarial_filter: null")
    unknown = sorted(set(adversarial_filter) - {"pool", "rounds"})
    if unknown:
        raise ConfigError(f"{role}.adversarial_filter: unknown key(s) {unknown}; known: pool, rounds")
    pool, rounds = adversarial_filter.get("pool"), adversarial_filter.get("rounds")
    if not isinstance(pool, int) or isinstance(pool, bool) or pool <= num_fakes:
        raise ConfigError(f"{role}.adversarial_filter.pool is {pool!r}: expected an integer above "
                          f"{role}.num_fakes ({num_fakes}), the candidates sampled per prompt")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"{role}.adversarial_filter.rounds is {rounds!r}: expected an integer >= 1")
    return {"pool": pool, "rounds": rounds}


def build_spec(*, gen_cfg: Mapping, sources: Sequence[Path], num_examples: int, num_fakes: int, seed: int,
               words_max: int = 30, words_min: int = 20, device: str = "cpu", fakes: str = "paper",
               adversarial_filter: Mapping | None = None) -> dict:
    """Everything that determines what a build writes; its hash is the build's cache key."""
    sources = [Path(s) for s in sources]
    for path in sources:
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
    if fakes not in FAKES:
        raise ConfigError(f"intermediate.fakes must be one of {', '.join(FAKES)}, got {fakes!r}")
    spec = {"recipe_version": identity.RECIPE_VERSION, "fakes": fakes, "seed": seed, "num_examples": num_examples,
            "num_fakes": num_fakes, "words_max": words_max, "words_min": words_min,
            "sources": [file_sha256(p) for p in sources]}
    filtering = check_filter(adversarial_filter, num_fakes, fakes)
    if fakes == "swapped":  # no generator: nothing of it, nor of the device, changes the set
        return spec
    sampling = {k: gen_cfg[k] for k in ("top_p", "top_k", "temperature", "batch_size")}
    spec.update({
        "generator": _generator_identity(gen_cfg), "sampling": sampling,
        # Every generator setting, so that any change to the generator config builds a new set;
        # dtype as resolved here (auto depends on the hardware), since it changes the samples.
        # An unset cap (null) is the calls of every build before the cap existed: it keeps their keys.
        "generator_config": {k: v for k, v in gen_cfg.items() if not (k == "max_call_tokens" and v is None)},
        "dtype": resolve_dtype(gen_cfg.get("dtype"), device),
        "balance": {"features": list(BALANCED_FEATURES), "oversample": OVERSAMPLE} if fakes == "controlled" else None,
        # Samples differ across devices (kernels, RNG), so a device builds its own copy.
        "device": str(device).split(":")[0]})
    if filtering:  # only when on, so that unfiltered builds keep the keys they had
        spec["adversarial_filter"] = filtering
    return spec
