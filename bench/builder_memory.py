"""Peak memory of the real-fake builder's generation phase, per setting, each arm in a fresh process.

The default build samples a pool of 10 candidate fakes per prompt, 32 prompts per generate() call: 320 rows,
each as long as its prompt plus the largest budget of the call, all in SmolLM2's KV cache at once. The
controlled recipe's budgets run to 150+ tokens for the longest real endings, and those calls set the peak.
This bench samples the prompts with the LARGEST budgets (the worst calls of any build) through
sampling.sample_endings under the controlled recipe, and reports each arm's peak RSS (ru_maxrss) and seconds:

    python bench/builder_memory.py --prompts 32                       # arms: none, 30000, 15000
    python bench/builder_memory.py --prompts 32 --caps none 20000 --env MALLOC_MMAP_THRESHOLD_=1048576

An arm is a `generator.max_call_tokens` cap (none: calls of 32 prompts, as every build before the default cap). `--env`
adds the same arms again with that environment (e.g. a fixed glibc mmap threshold). One thread per arm."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def arm(prompts: int, pool: int, cap: int | None, cache_dir: str, data_dir: str) -> dict:
    """Runs in the child: load the generator, sample the largest-budget prompts, report peak RSS."""
    import torch
    from omegaconf import OmegaConf

    from stilts_lab.synth.controlled import BanTokens, controlled_budget, sentence_ender_ids
    from stilts_lab.synth.generator import load_generator
    from stilts_lab.synth.sampling import ending_tokens, sample_endings
    from stilts_lab.synth.sentences import candidate_sentences

    torch.set_num_threads(1)
    gen_cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf/generator/smollm2_135m.yaml"), resolve=True)
    gen_cfg["max_call_tokens"] = cap
    model, tokenizer = load_generator(gen_cfg, Path(cache_dir))
    data = Path(data_dir)
    sentences = candidate_sentences([data / "squad/train-v1.1.first44articles.json", data / "wikitext2/wiki.test.raw"],
                                    words_max=30, words_min=20)
    budgets = [controlled_budget(ending_tokens(tokenizer, s.ending)) for s in sentences]
    worst = sorted(range(len(sentences)), key=lambda i: -budgets[i])[:prompts]
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    sample_endings(model, tokenizer, [sentences[i].prompt for i in worst], [budgets[i] for i in worst],
                   num_fakes=pool, gen_cfg=gen_cfg, seed=0, batch_size=int(gen_cfg["batch_size"]),
                   processors=[BanTokens(sentence_ender_ids(tokenizer), len(tokenizer))])
    return {"cap": cap, "max_budget": max(budgets[i] for i in worst), "loaded_mb": round(loaded / 1024),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--pool", type=int, default=10, help="sequences per prompt (the filter's pool)")
    p.add_argument("--caps", nargs="+", default=["none", "30000", "15000"])
    p.add_argument("--env", default=None, help="NAME=VALUE: run every cap again with this in the environment")
    p.add_argument("--cache-dir", default=os.environ.get("STILTS_CACHE_DIR", str(REPO / ".cache")))
    p.add_argument("--data-dir", default=os.environ.get("STILTS_DATA_DIR"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:  # one arm, in this fresh process
        print(json.dumps(arm(args.prompts, args.pool, json.loads(args.child), args.cache_dir, args.data_dir)))
        return 0
    if not args.data_dir:
        p.error("set STILTS_DATA_DIR (or --data-dir) to the folder holding squad/ and wikitext2/")
    envs = [{}] + ([dict([args.env.split("=", 1)])] if args.env else [])
    print(f"{args.prompts} largest-budget prompts x pool {args.pool}, controlled recipe, 1 thread per arm", flush=True)
    print(f"{'cap (tokens/call)':>18s} {'env':>34s} {'max budget':>10s} {'loaded MB':>9s} {'peak MB':>8s} {'seconds':>8s}")
    for env in envs:
        for cap in args.caps:
            value = None if cap == "none" else int(cap)
            done = subprocess.run([sys.executable, __file__, "--child", json.dumps(value), "--prompts", str(args.prompts),
                                   "--pool", str(args.pool), "--cache-dir", args.cache_dir, "--data-dir", args.data_dir],
                                  capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1", **env))
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            r = json.loads(done.stdout.strip().splitlines()[-1])
            label = " ".join(f"{k}={v}" for k, v in env.items()) or "-"
            print(f"{cap:>18s} {label:>34s} {r['max_budget']:10d} {r['loaded_mb']:9d} {r['peak_mb']:8d} {r['seconds']:8.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
