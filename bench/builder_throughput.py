"""Real-fake builder throughput in generated sequences per second, before and after in one run: the
original code's loop (one prompt per generate() call, float32) against the builder's batched,
length-sorted generation with the previous defaults (float32, 16 prompts per call) and with the
current generator config (dtype, batch_size). Same prompts, budgets and sampling for all; every row
runs through realfake.sample_endings, on the real build's settings (the generator config and the
task's fakes= recipe: controlled fakes sample a larger budget under a sentence-end ban). The rows run
interleaved (A, B, C, A, B, C; --repeats), so that a change of load on a shared machine hits every row
alike; each ratio is taken within one repeat, and the median over repeats is reported, at equal dtype
(the batched builder against one prompt per call in its own dtype) and against the original float32 loop.
    python bench/builder_throughput.py --prompts 64
    python bench/builder_throughput.py --prompts 64 --fakes paper --batch-sizes 16,32,64
Data: --data-dir, else STILTS_DATA_DIR (the folder holding squad/ and wikitext2/)."""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stilts_lab.synth.controlled import BanTokens, controlled_budget, sentence_ender_ids
from stilts_lab.synth.generator import load_generator, resolve_dtype
from stilts_lab.synth.realfake import candidate_sentences, ending_tokens, sample_endings

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "conf/task/realfake.yaml"
BEFORE = {"dtype": "float32", "batch_size": 16}  # the builder's defaults before this bench's changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--fakes", choices=("paper", "controlled"), default=OmegaConf.load(TASK).get("fakes", "paper"),
                        help="fake recipe (default: the realfake task's)")
    parser.add_argument("--num-fakes", type=int, default=3, help="sequences sampled per prompt")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated prompts per call for extra batched rows at the config's dtype")
    parser.add_argument("--generator", type=Path, default=REPO / "conf/generator/smollm2_135m.yaml")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("STILTS_DATA_DIR"))
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("STILTS_CACHE_DIR", REPO / ".cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every row")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("no data: pass --data-dir or set STILTS_DATA_DIR to the folder holding squad/ and wikitext2/")
    sources = [args.data_dir / "squad/train-v1.1.first44articles.json", args.data_dir / "wikitext2/wiki.test.raw"]
    for path in sources:
        if not path.is_file():
            parser.error(f"data file not found: {path} (check --data-dir / STILTS_DATA_DIR)")

    gen_cfg = OmegaConf.to_container(OmegaConf.load(args.generator), resolve=True)
    after = {"dtype": resolve_dtype(gen_cfg.get("dtype"), args.device), "batch_size": int(gen_cfg["batch_size"])}
    sentences = candidate_sentences(sources, words_max=30, words_min=20)
    random.Random(args.seed).shuffle(sentences)
    sentences = sentences[:args.prompts]
    prompts = [s.prompt for s in sentences]

    # (label, dtype, prompts per call); the first row is the baseline of every ratio.
    rows = [("one prompt per call, float32 (original loop)", "float32", 1),
            (f"batched, before ({BEFORE['dtype']}, {BEFORE['batch_size']} per call)", BEFORE["dtype"],
             BEFORE["batch_size"]),
            (f"batched, after ({after['dtype']}, {after['batch_size']} per call)", after["dtype"], after["batch_size"])]
    if after["dtype"] != "float32":
        rows.append((f"one prompt per call, {after['dtype']}", after["dtype"], 1))
    for size in filter(None, (args.batch_sizes or "").split(",")):
        rows.append((f"batched ({after['dtype']}, {int(size)} per call)", after["dtype"], int(size)))

    models = {}
    print(f"{gen_cfg['name']} on {args.device} ({torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}), fakes={args.fakes}: {len(prompts)} prompts x {args.num_fakes} fakes, "
          f"{args.repeats} interleaved repeats")
    for _, dtype, _ in rows:
        if dtype in models:
            continue
        model, tokenizer = load_generator({**gen_cfg, "dtype": dtype}, args.cache_dir, args.device)
        real = [ending_tokens(tokenizer, s.ending) for s in sentences]
        budgets = [controlled_budget(t) for t in real] if args.fakes == "controlled" else real
        processors = [BanTokens(sentence_ender_ids(tokenizer), len(tokenizer))] if args.fakes == "controlled" else []
        models[dtype] = model, tokenizer, budgets, processors
        # One short call first, so that no timing pays for one-off kernel and allocator set-up.
        sample_endings(model, tokenizer, prompts[:2], budgets[:2], num_fakes=args.num_fakes, gen_cfg=gen_cfg,
                       seed=args.seed, batch_size=2, processors=processors)
    rates = {label: [] for label, _, _ in rows}
    for repeat in range(args.repeats):
        for label, dtype, size in rows:
            model, tokenizer, budgets, processors = models[dtype]
            start = time.perf_counter()
            sample_endings(model, tokenizer, prompts, budgets, num_fakes=args.num_fakes, gen_cfg=gen_cfg,
                           seed=args.seed, batch_size=size, processors=processors)
            seconds = time.perf_counter() - start
            rates[label].append(len(prompts) * args.num_fakes / seconds)
            print(f"  repeat {repeat + 1}/{args.repeats} {label:>52}: {seconds:7.1f} s  {rates[label][-1]:6.2f} "
                  f"sequences/s  (load {os.getloadavg()[0]:.1f})", flush=True)

    def ratio(a: str, b: str) -> float:  # median over repeats of a/b, each taken within one repeat
        return statistics.median(x / y for x, y in zip(rates[a], rates[b]))

    original = rows[0][0]
    after = rows[2][0]
    same_dtype = next(label for label, dtype, size in rows if size == 1 and dtype == rows[2][1])
    print(f"\n{'row':>52}  median seq/s  x original (median of per-repeat ratios)")
    for label in rates:
        print(f"{label:>52}: {statistics.median(rates[label]):8.2f}  {ratio(label, original):6.1f}x")
    print(f"\nbatched builder / one prompt per call at equal dtype ({rows[2][1]}): {ratio(after, same_dtype):.1f}x; "
          f"/ the original float32 loop: {ratio(after, original):.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
