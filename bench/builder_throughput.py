"""Real-fake builder throughput in generated sequences per second: the builder's batched,
length-grouped generation against one prompt per generate() call (the original code's loop).
Same generator, prompts, budgets and sampling; both run through realfake.sample_endings.
    python bench/builder_throughput.py --prompts 32 --fakes 3
    OMP_NUM_THREADS=1 python bench/builder_throughput.py   # on a CPU shared with other jobs
"""
from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stilts_lab.synth.generator import load_generator
from stilts_lab.synth.realfake import candidate_sentences, ending_tokens, sample_endings

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--fakes", type=int, default=3, help="sequences sampled per prompt")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="prompts per generate() call (default: the generator config's)")
    parser.add_argument("--generator", type=Path, default=REPO / "conf/generator/smollm2_135m.yaml")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("STILTS_DATA_DIR", "/work/shared/data"))
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("STILTS_CACHE_DIR", REPO / ".cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    gen_cfg = OmegaConf.to_container(OmegaConf.load(args.generator), resolve=True)
    batch_size = args.batch_size or int(gen_cfg["batch_size"])
    sources = [args.data_dir / "squad/train-v1.1.first44articles.json", args.data_dir / "wikitext2/wiki.test.raw"]
    sentences = candidate_sentences(sources, words_max=30, words_min=20)
    random.Random(args.seed).shuffle(sentences)
    prompts = [s.prompt for s in sentences[:args.prompts]]

    model, tokenizer = load_generator(gen_cfg, args.cache_dir, args.device)
    budgets = [ending_tokens(tokenizer, s.ending) for s in sentences[:args.prompts]]
    print(f"{gen_cfg['name']} on {args.device} ({torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}): {len(prompts)} prompts x {args.fakes} fakes, "
          f"budgets {min(budgets)}-{max(budgets)} tokens ({sum(budgets) / len(budgets):.1f} mean)")
    # One short call first, so that neither timing pays for one-off kernel and allocator set-up.
    sample_endings(model, tokenizer, prompts[:2], budgets[:2], num_fakes=args.fakes, gen_cfg=gen_cfg,
                   seed=args.seed, batch_size=2)

    rates = {}
    for name, size in (("one prompt per call", 1), (f"batched ({batch_size} prompts per call)", batch_size)):
        start = time.perf_counter()
        sample_endings(model, tokenizer, prompts, budgets, num_fakes=args.fakes, gen_cfg=gen_cfg,
                       seed=args.seed, batch_size=size)
        seconds = time.perf_counter() - start
        rates[name] = len(prompts) * args.fakes / seconds
        print(f"{name:>32}: {seconds:7.1f} s  {rates[name]:6.2f} sequences/s")
    slow, fast = rates.values()
    print(f"{'speed-up':>32}: {fast / slow:.1f}x")


if __name__ == "__main__":
    main()
