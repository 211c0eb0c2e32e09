"""Where one training step's time goes: the project's step (stage.train_stage, the code every trial runs,
under Lightning's SimpleProfiler) against a bare loop over the SAME DataLoader (the project's length-grouped
batches and collator), phase by phase: forward + loss, backward, clip, optimizer step, and the rest (data,
hooks, logging, the per-step malloc_trim). Same model, rows, batch size and precision (trainer=cpu as
configured: bf16 autocast where the CPU has it). Each side trains 2 epochs; the last is reported, so
warm-up is outside the numbers. Sides run interleaved (A, B, A, B; --repeats), median per phase.

    python bench/step_profile.py --limit 400                       # RTE, 400 examples, batch 16
    python bench/step_profile.py --limit 400 --project trainer.malloc_trim_every_n_steps=null

--optimizer-step times the optimizer step alone (gradients fixed, random weights of a shipped shape),
per step with the device synchronized, the fastest of --repeats interleaved rounds (default 5), for the
ways the GPU path could clip before its fused AdamW step:
  fused             fused AdamW, no clipping (what runs with trainer.gradient_clip_val=null)
  fused+guard       fused AdamW, clip to 1.0 and the non-finite guard (this project: models/optim.py)
  foreach+clip      foreach AdamW with clip_grad_norm_ (dropping fused where clipping is on)

    python bench/step_profile.py --optimizer-step                   # CPU, MiniLM shape
    python bench/step_profile.py --optimizer-step --device cuda --shape roberta-large
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.profilers import SimpleProfiler
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from stilts_lab.compose import compose_config
from stilts_lab.models.encoder import SHAPES, load_head_model, load_tokenizer, resolve_pretrained, resolve_tokenizer
from stilts_lab.models.optim import StepGuard, adamw
from stilts_lab.models.stage_module import synchronize
from stilts_lab.stage import HEADS, clip_value, head_config, stage_data, stage_settings, train_stage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arms as A  # noqa: E402  (bench/arms.py, beside this script)

PHASES = ["forward", "backward", "clip", "optimizer", "rest", "step"]


def bare(cfg, data, epochs: int) -> dict[str, float]:
    """The bare loop over the project's own DataLoader; mean seconds per phase over the last epoch."""
    L.seed_everything(int(cfg.seed), verbose=False)
    task = OmegaConf.to_container(cfg.target, resolve=True)
    model = load_head_model(HEADS[task["kind"]], resolve_pretrained(cfg.model), attn_implementation="sdpa",
                            head=head_config(task["kind"], data.num_labels)).train()
    s = stage_settings(cfg, "target")
    optimizer = adamw(model, lr=s.lr, weight_decay=s.weight_decay, fused=True)
    loader = data.train_dataloader()
    scheduler = get_linear_schedule_with_warmup(optimizer, int(len(loader) * epochs * s.warmup_ratio), len(loader) * epochs)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    clip = clip_value(cfg.trainer)
    for _ in range(epochs):
        spent = dict.fromkeys(PHASES, 0.0)
        epoch_start = time.perf_counter()
        for batch in loader:
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
            t3 = time.perf_counter()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            t4 = time.perf_counter()
            for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                spent[phase] += seconds
        steps = len(loader)
        spent["step"] = time.perf_counter() - epoch_start
        spent["rest"] = spent["step"] - sum(spent[p] for p in PHASES[:4])
    return {p: v / steps for p, v in spent.items()}


def project(cfg, tokenizer, out: Path) -> dict[str, float]:
    """stage.train_stage with Lightning's SimpleProfiler; mean seconds per phase over the last epoch."""
    profiler = SimpleProfiler()
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True) | {"profiler": profiler}
    result = train_stage(task=OmegaConf.to_container(cfg.target, resolve=True), encoder_source=resolve_pretrained(cfg.model),
                         tokenizer=tokenizer, settings=stage_settings(cfg, "target"), trainer_cfg=trainer_cfg,
                         seed=int(cfg.seed), split_seed=int(cfg.data.split_seed), data_dir=cfg.paths.data_dir,
                         cache_dir=cfg.paths.cache_dir, log_dir=out, logger_cfg=None)
    steps = len(result.data.train_dataloader())
    d = profiler.recorded_durations

    def last(action: str) -> float:  # the last epoch's calls of one profiled action, summed
        return sum(d[action][-steps:])

    forward = last("[Strategy]SingleDeviceStrategy.training_step")
    backward = last("[Strategy]SingleDeviceStrategy.backward")
    clip = last("[LightningModule]StageModule.on_before_optimizer_step")
    optimizer = last("[LightningModule]StageModule.optimizer_step") - forward - backward - clip
    step = result.module.epoch_seconds[-1]  # the module's own epoch clock (what metrics.json reports)
    totals = {"forward": forward, "backward": backward, "clip": clip, "optimizer": optimizer, "step": step}
    totals["rest"] = step - forward - backward - clip - optimizer
    return {p: v / steps for p, v in totals.items()}


def seconds_per_step(step, steps: int, device: torch.device) -> float:
    for _ in range(3):  # warm-up: optimizer state allocation, kernel caches
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def optimizer_step(args) -> int:
    """What clipping before the fused AdamW step costs: the optimizer step alone, per variant."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(SHAPES / args.shape)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) * 0.1 for p in params]  # norm well above 1: clipping does real work

    def copy():
        for p, g in zip(params, grads):
            p.grad = g.clone()

    def variant(fused: bool, clip: str):
        opt = adamw(model, lr=1e-5, weight_decay=0.01, fused=fused)
        guard = StepGuard(1.0)

        def step():
            copy()
            if clip == "guard":
                guard.before_step(opt, params)
            elif clip == "clip_grad_norm":
                torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            opt.step()
        return functools.partial(seconds_per_step, step, args.steps, device)

    variants = {"fused": variant(True, "none"), "fused+guard": variant(True, "guard"),
                "foreach+clip": variant(False, "clip_grad_norm"),
                "copy": functools.partial(seconds_per_step, copy, args.steps, device)}
    # the fastest round counts: a shared machine's noise only adds time
    best = {}
    for _, name, seconds in A.interleaved(variants, args.repeats):
        best[name] = min(best.get(name, seconds), seconds)
    copied = best.pop("copy")  # the gradient copy is in every variant: subtract it
    times = {name: t - copied for name, t in best.items()}
    n = sum(p.numel() for p in params) / 1e6
    print(f"device {args.device}, shape {args.shape} ({n:.0f}M parameters), best of {args.repeats} rounds of "
          f"{args.steps} steps, gradient copy ({copied * 1e3:.2f} ms) subtracted")
    print(f"{'variant':14s} {'ms/step':>8s} {'x fused':>8s}")
    for name, t in times.items():
        print(f"{name:14s} {t * 1e3:8.2f} {t / times['fused']:8.2f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=400, help="RTE train examples")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 2; --optimizer-step 5)")
    p.add_argument("--project", nargs="*", default=[], help="extra overrides for the project's side")
    p.add_argument("--data-dir", default=os.environ.get("STILTS_DATA_DIR"))
    p.add_argument("--optimizer-step", action="store_true", help="time the optimizer step alone, per clipping choice")
    p.add_argument("--device", default="cpu", help="--optimizer-step: cpu or cuda")
    p.add_argument("--shape", default="minilm-l6", help="--optimizer-step: a folder under src/stilts_lab/shapes")
    p.add_argument("--steps", type=int, default=10, help="--optimizer-step: timed steps per round")
    args = p.parse_args()
    if args.optimizer_step:
        args.repeats = args.repeats or 5
        return optimizer_step(args)
    args.repeats = args.repeats or 2
    if not args.data_dir or not (Path(args.data_dir) / "rte" / "train.tsv").is_file():
        p.error("set STILTS_DATA_DIR (or --data-dir) to a data root holding rte/train.tsv")
    work = Path(tempfile.mkdtemp(prefix="step-profile-"))
    base = ["target=rte", "intermediate=none", f"target.train_size={args.limit}", "target.eval_size=16",
            f"data.batch_size={args.batch_size}", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
            f"paths.data_dir={args.data_dir}", f"paths.cache_dir={work / 'cache'}"]
    cfg = compose_config(base + args.project)
    tokenizer = load_tokenizer(resolve_tokenizer(cfg.model))
    data = stage_data(OmegaConf.to_container(cfg.target, resolve=True), tokenizer, batch_size=args.batch_size,
                      trainer_cfg=cfg.trainer, seed=int(cfg.seed), split_seed=int(cfg.data.split_seed),
                      data_dir=args.data_dir, cache_dir=str(work / "cache"))
    print(f"{torch.get_num_threads()} threads, precision {cfg.trainer.precision}, RTE {args.limit} examples, batch "
          f"{args.batch_size}, project overrides {args.project or 'none'}; ms per step, last of 2 epochs", flush=True)
    runs: dict[str, list[dict]] = {"bare": [], "project": []}
    sides = {"bare": lambda: bare(cfg, data, epochs=2),
             "project": lambda: project(cfg, tokenizer, work / f"project-{len(runs['project'])}")}
    for repeat, side, phases in A.interleaved(sides, args.repeats):
        runs[side].append(phases)
        print(f"  repeat {repeat + 1}: {side:8s} " + "  ".join(f"{k} {v * 1e3:7.1f}" for k, v in phases.items()),
              flush=True)
    med = {side: {k: statistics.median(r[k] for r in rs) for k in PHASES} for side, rs in runs.items()}
    print(f"\n{'phase':10s} {'bare ms':>9s} {'project ms':>11s} {'project - bare':>15s}")
    for phase in PHASES:
        b, q = med["bare"][phase] * 1e3, med["project"][phase] * 1e3
        print(f"{phase:10s} {b:9.1f} {q:11.1f} {q - b:+15.1f}")
    print(f"\nproject / bare throughput: {med['bare']['step'] / med['project']['step']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
