"""How far the real-fake builder is from this CPU's physical limit (issue 38): the generator's FLOPs per
token times the tokens a build sampled, against the bf16 matmul rate this CPU reaches, measured here.

    python bench/cpu_peak.py --build .cache/realfake/<key>      # a built set's folder (provenance.json)

Prints, for 1 and 2 torch threads: the bf16 rate of a large square matmul (the best this CPU does) and of
the decode step's own shapes (rows x hidden @ hidden x intermediate, the MLP's up projection); then the
build's token-forwards, their FLOPs, the time they would take at each rate, and the build's measured
sampling time (provenance generate_seconds). Forward FLOPs per token = 2 x the multiply-adds of every
projection and of the LM head (attention over ~50 positions adds under 2%, left out: a floor)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


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

    from stilts_lab.synth.controlled import controlled_budget
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", type=Path, required=True, help="a built real-fake set's folder")
    p.add_argument("--generator", type=Path, help="the converted generator folder (default: "
                   "<build>/../../generators/<the only one>)")
    p.add_argument("--rows", type=int, default=200, help="decode rows per step (the call cap's ~200)")
    args = p.parse_args()
    generator = args.generator or next(p for p in (args.build.parent.parent / "generators").iterdir() if p.is_dir())
    config = json.loads((generator / "config.json").read_text())
    per_token = flops_per_token(config)
    sampled, prefill, measured = build_tokens(args.build, generator)
    total = (sampled + prefill) * per_token
    print(f"generator {generator.name}: {per_token / 1e6:.0f} MFLOP per token-forward")
    print(f"build {args.build.name}: {sampled:,} sampled + {prefill:,} prefill token-forwards = {total / 1e12:.1f} TFLOP; "
          f"sampling took {measured:.0f} s ({total / measured / 1e9:.0f} GFLOP/s achieved)")
    h, inter = config["hidden_size"], config["intermediate_size"]
    print("| threads | square 2048 bf16 GFLOP/s | decode shape bf16 GFLOP/s | build at square rate (s) | measured / that |")
    print("|---|---|---|---|---|")
    for threads in (1, 2):
        square = matmul_rate(2048, 2048, 2048, threads)
        decode = matmul_rate(args.rows, h, inter, threads)
        floor = total / (square * 1e9)
        print(f"| {threads} | {square:.0f} | {decode:.0f} | {floor:.0f} | {measured / floor:.1f}x |")


if __name__ == "__main__":
    main()
