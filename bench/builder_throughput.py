"""Real-fake builder throughput in generated sequences per second, before and after in one run: the
original code's loop (one prompt per generate() call, float32) against the builder's batched,
length-sorted generation with the previous defaults (float32, 16 prompts per call), with the current
generator config (dtype, batch_size) under generate() (recipe version 3), and with the current
sampler (synth/decode.py, recipe version 4: prefill once per prompt, nucleus-shortlist draws; issue #38).
Same prompts, budgets and sampling for all; every row
runs through sampling.sample_endings, on the real build's settings (the generator config and the
task's fakes= recipe: controlled fakes sample a larger budget under a sentence-end ban). The rows run
interleaved (A, B, C, A, B, C; --repeats), so that a change of load on a shared machine hits every row
alike; each ratio is taken within one repeat, and the median over repeats is reported, at equal dtype
(the batched builder against one prompt per call in its own dtype) and against the original float32 loop.
    python bench/builder_throughput.py --prompts 64
    python bench/builder_throughput.py --prompts 64 --fakes paper --batch-sizes 16,32,64
    python bench/builder_throughput.py --prompts 32 --repeats 2 --rows equal-dtype   # no float32 rows
Each row also reports sampled tokens/s, examples (prompts)/s, its peak RSS (VmHWM, reset before the row
through /proc/self/clear_refs) and, for the current sampler, the share of its time in prefill.
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
from stilts_lab.synth.sampling import ending_tokens, sample_endings
from stilts_lab.synth.sentences import candidate_sentences
from stilts_lab.synth import decode
from stilts_lab.synth.sampling import FAST_SAMPLER_VERSION

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "conf/task/realfake.yaml"
BEFORE = {"dtype": "float32", "batch_size": 16}  # the builder's defaults before this bench's changes
GENERATE = FAST_SAMPLER_VERSION - 1  # the recipe version of the generate() sampler


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM), so that each row reports its own; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default torch's); 1 on a shared machine, where two threads on two "
                             "busy cores wait on each other (tests/test_synth.py one_thread)")
    parser.add_argument("--rows", choices=("all", "equal-dtype"), default="all",
                        help="equal-dtype: only the rows at the config's dtype (one prompt per call, batched "
                             "generate(), the current sampler), for the equal-dtype ratio in less time")
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("no data: pass --data-dir or set STILTS_DATA_DIR to the folder holding squad/ and wikitext2/")
    sources = [args.data_dir / "squad/train-v1.1.first44articles.json", args.data_dir / "wikitext2/wiki.test.raw"]
    for path in sources:
        if not path.is_file():
            parser.error(f"data file not found: {path} (check --data-dir / STILTS_DATA_DIR)")

    if args.threads:
        torch.set_num_threads(args.threads)
    gen_cfg = OmegaConf.to_container(OmegaConf.load(args.generator), resolve=True)
    after = {"dtype": resolve_dtype(gen_cfg.get("dtype"), args.device), "batch_size": int(gen_cfg["batch_size"])}
    sentences = candidate_sentences(sources, words_max=30, words_min=20)
    random.Random(args.seed).shuffle(sentences)
    sentences = sentences[:args.prompts]
    prompts = [s.prompt for s in sentences]

    # (label, dtype, prompts per call, recipe version); the first row is the baseline of every ratio.
    dtype = after["dtype"]
    rows = [("one prompt per call, float32 (original loop)", "float32", 1, GENERATE),
            (f"batched, before ({BEFORE['dtype']}, {BEFORE['batch_size']} per call)", BEFORE["dtype"],
             BEFORE["batch_size"], GENERATE),
            (f"generate(), {dtype}, {after['batch_size']} per call (v{GENERATE})", dtype, after["batch_size"],
             GENERATE),
            (f"decode loop, {dtype}, {after['batch_size']} per call (v{FAST_SAMPLER_VERSION})", dtype,
             after["batch_size"], FAST_SAMPLER_VERSION)]
    if dtype != "float32":
        rows.append((f"one prompt per call, {dtype}", dtype, 1, GENERATE))
    if args.rows == "equal-dtype":  # the equal-dtype baseline first: it is every ratio's denominator then
        rows = [rows[-1], *rows[2:-1]] if dtype != "float32" else [rows[0], *rows[2:]]
    # The decode loop with a preallocated StaticCache instead of the growing DynamicCache (issue #38, 2).
    rows.append((f"decode loop, {dtype}, {after['batch_size']} per call, static cache", dtype, after["batch_size"],
                 "static"))
    for size in filter(None, (args.batch_sizes or "").split(",")):
        rows.append((f"decode loop ({dtype}, {int(size)} per call)", dtype, int(size), FAST_SAMPLER_VERSION))
    tokens = {}

    models = {}
    print(f"{gen_cfg['name']} on {args.device} ({torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}), fakes={args.fakes}: {len(prompts)} prompts x {args.num_fakes} fakes, "
          f"{args.repeats} interleaved repeats")
    for _, dtype, _, _ in rows:
        if dtype in models:
            continue
        model, tokenizer = load_generator({**gen_cfg, "dtype": dtype}, args.cache_dir, args.device)
        real = [ending_tokens(tokenizer, s.ending) for s in sentences]
        budgets = [controlled_budget(t) for t in real] if args.fakes == "controlled" else real
        processors = [BanTokens(sentence_ender_ids(tokenizer), len(tokenizer))] if args.fakes == "controlled" else []
        models[dtype] = model, tokenizer, budgets, processors
        # One short call first, so that no timing pays for one-off kernel and allocator set-up.
        for version in (GENERATE, FAST_SAMPLER_VERSION):
            sample_endings(model, tokenizer, prompts[:2], budgets[:2], num_fakes=args.num_fakes, gen_cfg=gen_cfg,
                           seed=args.seed, batch_size=2, processors=processors, recipe_version=version)
        tokens[dtype] = sum(budgets) * args.num_fakes
    rates = {label: [] for label, *_ in rows}
    for repeat in range(args.repeats):
        for label, dtype, size, version in rows:
            model, tokenizer, budgets, processors = models[dtype]
            decode.CACHE_KIND = "static" if version == "static" else "dynamic"
            version = FAST_SAMPLER_VERSION if version == "static" else version
            reset = reset_peak_rss()
            stats = {}
            start = time.perf_counter()
            sample_endings(model, tokenizer, prompts, budgets, num_fakes=args.num_fakes, gen_cfg=gen_cfg,
                           seed=args.seed, batch_size=size, processors=processors, recipe_version=version,
                           stats=stats)
            seconds = time.perf_counter() - start
            rates[label].append(len(prompts) * args.num_fakes / seconds)
            share = (f"  prefill {stats['prefill_seconds'] / seconds:.0%} of the time, "
                     f"{stats['prefill_tokens']} prefill + {stats['decode_tokens']} decode token-forwards"
                     if stats else "")
            print(f"  repeat {repeat + 1}/{args.repeats} {label:>52}: {seconds:7.1f} s  {rates[label][-1]:6.2f} "
                  f"sequences/s  {tokens[dtype] / seconds:6.1f} tokens/s  {len(prompts) / seconds:5.2f} "
                  f"examples/s  peak RSS {peak_rss_mib() if reset else float('nan'):6.0f} MiB{share}  "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)

    def ratio(a: str, b: str) -> float:  # median over repeats of a/b, each taken within one repeat
        return statistics.median(x / y for x, y in zip(rates[a], rates[b]))

    original = rows[0][0]
    current, batched = (next(label for label, _, size, v in rows if v == version and size > 1)
                        for version in (FAST_SAMPLER_VERSION, GENERATE))
    same_dtype = next(label for label, dtype, size, _ in rows if size == 1 and dtype == after["dtype"])
    print(f"\n{'row':>52}  median seq/s  x first row (median of per-repeat ratios)")
    for label in rates:
        print(f"{label:>52}: {statistics.median(rates[label]):8.2f}  {ratio(label, original):6.1f}x")
    print(f"\ndecode loop (v{FAST_SAMPLER_VERSION}) / one prompt per call at equal dtype ({after['dtype']}): "
          f"{ratio(current, same_dtype):.1f}x; / batched generate() (v{GENERATE}): {ratio(current, batched):.1f}x; "
          f"batched generate() / one prompt per call: {ratio(batched, same_dtype):.1f}x")
    if "float32" != after["dtype"] and args.rows == "all":
        print(f"decode loop / the original float32 loop: {ratio(current, rows[0][0]):.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
