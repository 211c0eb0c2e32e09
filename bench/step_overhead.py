"""What clipping before the fused AdamW step costs, side by side in one run: the optimizer step alone
(gradients fixed), for the ways the GPU path could have been fixed.

    python bench/step_overhead.py                       # CPU, MiniLM shape
    python bench/step_overhead.py --device cuda --shape roberta-large

Variants, each timed over --steps steps with the device synchronized, best of --rounds interleaved rounds:
  fused             fused AdamW, no clipping (what runs with trainer.gradient_clip_val=null)
  fused+guard       fused AdamW, clip to 1.0 and the non-finite guard (this project: models/optim.py)
  foreach+clip      foreach AdamW with clip_grad_norm_ (dropping fused where clipping is on)
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from stilts_lab.models.encoder import SHAPES
from stilts_lab.models.optim import StepGuard, adamw
from stilts_lab.models.stage_module import synchronize


def timed(step, steps: int, device: torch.device) -> float:
    for _ in range(3):  # warm-up: optimizer state allocation, kernel caches
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", default="minilm-l6")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(SHAPES / args.shape)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) * 0.1 for p in params]  # norm well above 1: clipping does real work

    def variant(fused: bool, clip: str):
        opt = adamw(model, lr=1e-5, weight_decay=0.01, fused=fused)
        guard = StepGuard(1.0)

        def step():
            for p, g in zip(params, grads):
                p.grad = g.clone()
            if clip == "guard":
                guard.before_step(opt, params)
            elif clip == "clip_grad_norm":
                torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            opt.step()
        return step

    variants = {"fused": variant(True, "none"), "fused+guard": variant(True, "guard"),
                "foreach+clip": variant(False, "clip_grad_norm")}
    variants["copy"] = lambda: [setattr(p, "grad", g.clone()) for p, g in zip(params, grads)]
    # rounds interleave the variants and the fastest round counts: a shared machine's noise only adds time
    rounds = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            rounds[name].append(timed(step, args.steps, device))
    best = {name: min(ts) for name, ts in rounds.items()}
    copy = best.pop("copy")  # the gradient copy is in every variant: subtract it
    times = {name: t - copy for name, t in best.items()}
    n = sum(p.numel() for p in params) / 1e6
    print(f"device {args.device}, shape {args.shape} ({n:.0f}M parameters), best of {args.rounds} rounds of {args.steps} steps, "
          f"gradient copy ({copy * 1e3:.2f} ms) subtracted")
    print(f"{'variant':14s} {'ms/step':>8s} {'x fused':>8s}")
    for name, t in times.items():
        print(f"{name:14s} {t * 1e3:8.2f} {t / times['fused']:8.2f}")


if __name__ == "__main__":
    main()
