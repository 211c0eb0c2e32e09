"""Peak memory of the tokenization cache: the torch-pickled Python lists it used to be ("lists")
against the memory-mapped Arrow folder it is now ("arrow"), on HellaSwag from the data root.

    STILTS_DATA_DIR=../shared/data python bench/tokenize_memory.py             # 3,368 rows as shipped
    STILTS_DATA_DIR=../shared/data python bench/tokenize_memory.py --repeat 12  # 40,416 rows: full-train scale

Every arm runs in a fresh subprocess and reports ru_maxrss (peak resident memory): "cold" tokenizes
and writes the cache, "warm" reads it back as every later trial does and touches what the DataModule
touches (lengths for the sampler, labels for the baseline). "before encode" is the same process's
peak after imports, tokenizer and the raw examples, i.e. what both arms share.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def lists_cached(examples, tokenizer, *, max_length, path: Path):
    """The cache as it was before (tokenize.py at e72ca07^, multiple-choice branch, verbatim):
    one tokenizer call over every choice, sliced into Python lists, torch.save / torch.load."""
    import torch
    from stilts_lab.data.tokenize import _tokenize
    if path.is_file():
        return torch.load(path, weights_only=True)
    n = len(examples[0]["choices"]) if examples else 0
    firsts = [c[0] for ex in examples for c in ex["choices"]]
    seconds = [c[1] for ex in examples for c in ex["choices"]]
    enc = _tokenize(tokenizer, firsts, seconds, max_length)
    encoded = [{key: enc[key][i * n:(i + 1) * n] for key in enc} | {"label": ex["label"]}
               for i, ex in enumerate(examples)]
    torch.save(encoded, path)
    return encoded


def child(arm: str, cache: Path, repeat: int) -> dict:
    from omegaconf import OmegaConf
    from hydra import compose, initialize_config_dir
    from stilts_lab.data.tasks import load_task, shuffle_choices
    from stilts_lab.data.tokenize import LENGTH, encode_cached
    from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["target=hellaswag"])
    task = OmegaConf.to_container(cfg.target, resolve=True)
    tokenizer = load_tokenizer(resolve_tokenizer(cfg.model))
    data = load_task(task, data_dir=os.environ["STILTS_DATA_DIR"], split_seed=0)
    examples = shuffle_choices(data.train.examples + data.eval.examples, 0) * repeat
    before = peak_mb()
    start = time.perf_counter()
    key = f"bench-hellaswag-x{repeat}"
    if arm == "lists":
        encoded = lists_cached(examples, tokenizer, max_length=task["max_length"], path=cache / f"{key}.pt")
        lengths = [max(len(c) for c in ex["input_ids"]) for ex in encoded]
        labels = [ex["label"] for ex in encoded]
    else:
        encoded = encode_cached(examples, tokenizer, kind="multiple_choice", max_length=task["max_length"],
                                key=key, cache_dir=cache)
        lengths, labels = list(encoded[LENGTH]), list(encoded["label"])
    assert len(lengths) == len(labels) == len(examples)
    return {"examples": len(examples), "before_encode_mb": round(before), "peak_mb": round(peak_mb()),
            "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="copies of the HellaSwag rows (12: ~40k)")
    parser.add_argument("--child", nargs=2, metavar=("ARM", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.repeat)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for arm in ("lists", "arrow"):
            for phase in ("cold", "warm"):
                out = subprocess.run([sys.executable, __file__, "--repeat", str(args.repeat), "--child", arm, cache],
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                rows.append({"cache": arm, "phase": phase, **json.loads(out)})
    print("| cache | phase | examples | peak RSS before encode (MB) | peak RSS (MB) | added (MB) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cache']} | {r['phase']} | {r['examples']} | {r['before_encode_mb']} | {r['peak_mb']} | "
              f"{r['peak_mb'] - r['before_encode_mb']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
