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
Data: --data-dir, else STILTS_DATA_DIR (the folder holding squad/ and wikitext2/).

--physical-limit: how far a build is from this CPU's physical limit, instead of the rows: the generator's
FLOPs per token times the tokens the build sampled, against the bf16 matmul rate this CPU reaches, measured
here, for 1 and 2 torch threads: a large square matmul (the best this CPU does) and the decode step's own
shapes (rows x hidden @ hidden x intermediate, the MLP's up projection); then the build's token-forwards,
their FLOPs, the time they would take at each rate, and the build's measured sampling time (provenance
generate_seconds). Forward FLOPs per token = 2 x the multiply-adds of every projection and of the LM head
(attention over ~50 positions adds under 2%, left out: a floor).
    python bench/builder_throughput.py --physical-limit .cache/realfake/<key>   # a built set's folder

--draw-rows N: what drawing one token costs per decode step, for N rows of SmolLM2's real next-token logits
(after N WikiText prefixes; top_p 0.9, top_k 0, temperature 1), interleaved:
the decode loop's shortlist draw (synth/decode.nucleus_draw) against transformers' own TopPLogitsWarper
followed by softmax and multinomial over the whole vocabulary, as generate() samples.
    python bench/builder_throughput.py --draw-rows 200 --threads 1 --converted-generator .cache/generators/<name>"""
from __future__ import annotations

import argparse
import functools
import json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arms as A  # noqa: E402  (bench/arms.py, beside this script)

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


def matmul_rate(m: int, k: int, n: int, threads: int, seconds: float = 2.0) -> float:
    """bf16 GFLOP/s of (m x k) @ (k x n), best of repeated timed bursts."""
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k, dtype=torch.bfloat16), torch.randn(k, n, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        reps = max(1, int(2e9 // (2 * m * k * n)))
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_token(config: dict) -> float:
    """Forward FLOPs of one token of a Llama-shaped decoder: projections, MLP and the LM head."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = config["num_key_value_heads"] * config.get("head_dim", h // config["num_attention_heads"])
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter   # q, o; k, v; gate, up, down
    return 2.0 * (layers * per_layer + h * config["vocab_size"])


def build_tokens(build: Path, generator: Path) -> tuple[int, int, float]:
    """(sampled token-forwards, prefill token-forwards, measured sampling seconds) of a built set:
    each sequence runs to its budget (the real ending's token count; controlled fakes: the larger
    controlled_budget), so sequences x the mean budget, the kept examples standing for the pool (an upper
    bound: a row may stop early); prefill runs once per prompt (recipe 4)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(generator)
    provenance = json.loads((build / "provenance.json").read_text())
    rows = [json.loads(line) for line in (build / "examples.jsonl").read_text().splitlines() if line]
    budget = controlled_budget if provenance["fakes"] == "controlled" else (lambda n: n)
    real = [r["endings"][r["label"]] for r in rows]
    ending = sum(budget(len(tok(" " + e)["input_ids"])) for e in real) / len(real)
    prompt = sum(len(tok(r["prompt"])["input_ids"]) for r in rows) / len(rows)
    sequences = provenance["counts"]["generated_sequences"]
    pool = (provenance.get("adversarial_filter") or {}).get("pool") or provenance["num_fakes"]
    prompts = sequences / pool
    return round(sequences * ending), round(prompts * prompt), float(provenance["generate_seconds"])


def physical_limit(build: Path, generator: Path | None, decode_rows: int) -> None:
    generator = generator or next(p for p in (build.parent.parent / "generators").iterdir() if p.is_dir())
    config = json.loads((generator / "config.json").read_text())
    per_token = flops_per_token(config)
    sampled, prefill, measured = build_tokens(build, generator)
    total = (sampled + prefill) * per_token
    print(f"generator {generator.name}: {per_token / 1e6:.0f} MFLOP per token-forward")
    print(f"build {build.name}: {sampled:,} sampled + {prefill:,} prefill token-forwards = {total / 1e12:.1f} TFLOP; "
          f"sampling took {measured:.0f} s ({total / measured / 1e9:.0f} GFLOP/s achieved)")
    h, inter = config["hidden_size"], config["intermediate_size"]
    print("| threads | square 2048 bf16 GFLOP/s | decode shape bf16 GFLOP/s | build at square rate (s) | measured / that |")
    print("|---|---|---|---|---|")
    for threads in (1, 2):
        square = matmul_rate(2048, 2048, 2048, threads)
        decode_rate = matmul_rate(decode_rows, h, inter, threads)
        floor = total / (square * 1e9)
        print(f"| {threads} | {square:.0f} | {decode_rate:.0f} | {floor:.0f} | {measured / floor:.1f}x |")


def real_logits(generator: Path, rows: int, text: Path) -> torch.Tensor:
    """SmolLM2's next-token logits after `rows` real prose prefixes (12-40 tokens of WikiText each)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(generator)
    model = AutoModelForCausalLM.from_pretrained(generator, dtype=torch.float32).eval()
    words = text.read_text(encoding="utf-8").split()
    rng = random.Random(0)
    out = []
    with torch.no_grad():
        for _ in range(rows):
            start = rng.randrange(len(words) - 60)
            ids = tok(" ".join(words[start:start + rng.randrange(10, 30)]), return_tensors="pt").input_ids
            out.append(model(ids).logits[0, -1])
    return torch.stack(out)


def draw_cost(rows: int, repeats: int, generator: Path, text: Path, steps: int = 20) -> None:
    from transformers.generation.logits_process import TopPLogitsWarper
    logits = real_logits(generator, rows, text)
    g = torch.Generator().manual_seed(0)
    warper = TopPLogitsWarper(top_p=0.9)

    def shortlist():
        return decode.nucleus_draw(logits, top_p=0.9, generator=g)

    def transformers_warpers():
        return torch.multinomial(warper(None, logits.clone()).softmax(-1), 1, generator=g).squeeze(-1)

    def timed(fn):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - start) / steps * 1000

    results: dict[str, list[float]] = {}
    for _, name, ms in A.interleaved({"shortlist draw (recipe 4)": lambda: timed(shortlist),
                                      "TopPLogitsWarper + softmax + multinomial": lambda: timed(transformers_warpers)},
                                     repeats):
        results.setdefault(name, []).append(ms)
    nucleus = ((logits.softmax(-1).sort(-1, descending=True).values.cumsum(-1) < 0.9).sum(-1) + 1).float()
    print(f"{rows} rows of real next-token logits, vocabulary {logits.shape[-1]:,}; nucleus (top_p 0.9) size: "
          f"median {nucleus.median():.0f}, max {nucleus.max():.0f} tokens")
    print(f"| draw | ms per decode step (median of {repeats}) |\n|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} |")


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
    parser.add_argument("--physical-limit", type=Path, metavar="BUILD_DIR",
                        help="a built real-fake set's folder: how far it is from this CPU's bf16 peak (no rows)")
    parser.add_argument("--converted-generator", type=Path, default=None,
                        help="--physical-limit, --draw-rows: the converted generator folder (default: "
                             "BUILD_DIR/../../generators/<the first one>, or --cache-dir's)")
    parser.add_argument("--decode-rows", type=int, default=200,
                        help="--physical-limit: decode rows per step (the call cap's ~200)")
    parser.add_argument("--draw-rows", type=int, default=None,
                        help="only time one token's draw for this many rows: the shortlist against transformers' warpers")
    args = parser.parse_args()
    if args.draw_rows:
        if args.threads:
            torch.set_num_threads(args.threads)
        generator = args.converted_generator or next(p for p in (args.cache_dir / "generators").iterdir() if p.is_dir())
        if args.data_dir is None:
            parser.error("--draw-rows reads WikiText: pass --data-dir or set STILTS_DATA_DIR")
        draw_cost(args.draw_rows, args.repeats, generator, args.data_dir / "wikitext2/wiki.test.raw")
        return
    if args.physical_limit:
        physical_limit(args.physical_limit, args.converted_generator, args.decode_rows)
        return
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

    def sample_row(dtype: str, size: int, version: int | str) -> tuple[float, dict, float]:
        """(seconds, the sampler's stats, peak RSS in MiB) of one row's sampling."""
        model, tokenizer, budgets, processors = models[dtype]
        decode.CACHE_KIND = "static" if version == "static" else "dynamic"
        reset = reset_peak_rss()
        stats = {}
        start = time.perf_counter()
        sample_endings(model, tokenizer, prompts, budgets, num_fakes=args.num_fakes, gen_cfg=gen_cfg,
                       seed=args.seed, batch_size=size, processors=processors, stats=stats,
                       recipe_version=FAST_SAMPLER_VERSION if version == "static" else version)
        seconds = time.perf_counter() - start
        return seconds, stats, peak_rss_mib() if reset else float("nan")

    rates = {label: [] for label, *_ in rows}
    dtypes = {label: dtype for label, dtype, *_ in rows}
    sampled = {label: functools.partial(sample_row, dtype, size, version) for label, dtype, size, version in rows}
    for repeat, label, (seconds, stats, peak) in A.interleaved(sampled, args.repeats):
        rates[label].append(len(prompts) * args.num_fakes / seconds)
        share = (f"  prefill {stats['prefill_seconds'] / seconds:.0%} of the time, "
                 f"{stats['prefill_tokens']} prefill + {stats['decode_tokens']} decode token-forwards"
                 if stats else "")
        print(f"  repeat {repeat + 1}/{args.repeats} {label:>52}: {seconds:7.1f} s  {rates[label][-1]:6.2f} "
              f"sequences/s  {tokens[dtypes[label]] / seconds:6.1f} tokens/s  {len(prompts) / seconds:5.2f} "
              f"examples/s  peak RSS {peak:6.0f} MiB{share}  (load {os.getloadavg()[0]:.1f})", flush=True)

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
