"""Train throughput side by side, in one run: four ways to fine-tune the same encoder shape on the same
data (RTE train), batch size and max_length, and the wall time of the paper's 36-trial grid as one sweep.

    python bench/gpu_throughput.py                          # one GPU: roberta-large shape, batch 16, length 128
    python bench/gpu_throughput.py --grid-jobs 1 4          # also the grid with 4 trials at once on the GPU
    python bench/gpu_throughput.py --device cpu --tiny      # CPU smoke test (CI): a 2-layer shape, 64 examples

Arms (train examples per second over one epoch, the device synchronized before the clock stops):
  original  the 2021 recipe: fp32 (no TF32), every batch padded to max_length, random order, AdamW
  hf        transformers' Trainer: bf16, dynamic padding, train_sampling_strategy=group_by_length
  bare      a bare bf16 loop: length buckets, padding to a multiple of 8, fused AdamW, no host syncs
  project   this project's own trial (pipeline.run, trainer=gpu), read from its metrics.json
Weights are random (model.random_init=true with a shipped shape): nothing is downloaded, and speed does
not depend on the values of the weights. Writes a JSON of every number next to the printed table."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding,
                          get_linear_schedule_with_warmup)

REPO = Path(__file__).resolve().parents[1]
from stilts_lab.data.batching import LengthGroupedBatchSampler  # noqa: E402
from stilts_lab.data.datamodule import TaskDataModule  # noqa: E402
from stilts_lab.models.encoder import SHAPES, load_tokenizer, with_bpe_vocab  # noqa: E402
from stilts_lab.models.stage_module import synchronize  # noqa: E402

LR, WARMUP, CLIP, SEED = 1e-5, 0.1, 1.0, 42
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="a 2-layer shape and --limit 64: a smoke test")
    p.add_argument("--shape", default="roberta-large", help="a folder under src/stilts_lab/shapes")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--limit", type=int, default=None, help="train examples (default: all of RTE train)")
    p.add_argument("--arms", nargs="+", default=["original", "hf", "bare", "project"])
    p.add_argument("--grid-jobs", type=int, nargs="*", default=[1],
                   help="time the grid once per value (trials at once on the device); none: skip it")
    p.add_argument("--data-dir", default=os.environ.get("STILTS_DATA_DIR"))
    p.add_argument("--out", default=None, help="JSON of the results (default: $OUT or bench/results)")
    args = p.parse_args()
    if not args.data_dir or not (Path(args.data_dir) / "rte" / "train.tsv").is_file():
        p.error("set STILTS_DATA_DIR (or --data-dir) to a data root holding rte/train.tsv")
    if args.tiny:
        args.limit = args.limit or 64
    return args


def shape_dir(args, work: Path) -> Path:
    """The encoder's architecture config: a shipped shape, or for --tiny a 2-layer copy of it."""
    source = SHAPES / args.shape
    if not args.tiny:
        return source
    config = AutoConfig.from_pretrained(source)
    for key, value in TINY_SHAPE.items():
        setattr(config, key, value)
    config.save_pretrained(work / "tiny-shape")
    return work / "tiny-shape"


def project_overrides(args, shape: Path, work: Path) -> list[str]:
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    tokenizer = "bert-uncased" if AutoConfig.from_pretrained(shape).model_type == "bert" else "roberta"
    return ["model=roberta_large", "model.random_init=true", f"model.shape={shape}", f"model.shape_tokenizer={tokenizer}",
            "trainer=gpu", f"trainer.accelerator={accelerator}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            "target=rte", f"target.max_length={args.max_length}", f"target.train_size={args.limit or 'null'}",
            "target.eval_size=64", f"data.batch_size={args.batch_size}", f"optim.lr={LR}", f"optim.warmup_ratio={WARMUP}",
            f"seed={SEED}", "resume=false", f"paths.data_dir={args.data_dir}", f"paths.cache_dir={work / 'cache'}"]


def rte_train(args, shape: Path, work: Path, tokenizer) -> list[dict]:
    """RTE train tokenized once by the project's own data path (same truncation for every arm)."""
    from stilts_lab.compose import compose_config
    cfg = compose_config(project_overrides(args, shape, work))
    from omegaconf import OmegaConf
    data = TaskDataModule(OmegaConf.to_container(cfg.target, resolve=True), tokenizer, batch_size=args.batch_size,
                          seed=SEED, split_seed=0, data_dir=args.data_dir, cache_dir=str(work / "cache"))
    data.setup()
    keep = [k for k in ("input_ids", "token_type_ids", "label") if k in data.train_set.column_names]
    return [{k: row[k] for k in keep} for row in data.train_set]


def fresh_model(shape: Path, device: str):
    torch.manual_seed(SEED)
    config = AutoConfig.from_pretrained(shape, num_labels=2)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").to(device)


def timed_epoch(model, batches, device: str, *, bf16: bool, fused: bool) -> float:
    """One epoch of forward, backward, clip and step; seconds with the device synchronized."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(len(batches) * WARMUP), len(batches))
    model.train()
    synchronize(torch.device(device))
    start = time.perf_counter()
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP, foreach=True)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(torch.device(device))
    return time.perf_counter() - start


def arm_original(args, rows, shape, tokenizer, work) -> float:
    torch.set_float32_matmul_precision("highest")  # 2021: no TF32
    pad = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=args.max_length)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(SEED)).tolist()
    batches = [pad([rows[i] for i in order[s:s + args.batch_size]]) for s in range(0, len(order), args.batch_size)]
    seconds = timed_epoch(fresh_model(shape, args.device), batches, args.device, bf16=False, fused=False)
    return len(rows) / seconds


def arm_bare(args, rows, shape, tokenizer, work) -> float:
    torch.set_float32_matmul_precision("high")
    pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    sampler = LengthGroupedBatchSampler([len(r["input_ids"]) for r in rows], args.batch_size, shuffle=True, seed=SEED)
    pin = args.device == "cuda"
    batches = [{k: (v.pin_memory() if pin else v) for k, v in pad([rows[i] for i in ids]).items()} for ids in sampler]
    seconds = timed_epoch(fresh_model(shape, args.device), batches, args.device, bf16=True, fused=True)
    return len(rows) / seconds


def arm_hf(args, rows, shape, tokenizer, work) -> float:
    import datasets
    from transformers import Trainer, TrainingArguments
    torch.set_float32_matmul_precision("high")
    train = datasets.Dataset.from_list([dict(r, labels=r["label"]) for r in rows]).remove_columns("label")
    targs = TrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=args.batch_size, num_train_epochs=1,
        learning_rate=LR, warmup_steps=WARMUP, weight_decay=0.01, max_grad_norm=CLIP, bf16=True,
        train_sampling_strategy="group_by_length", save_strategy="no", eval_strategy="no",
        # warmup_steps: a float in [0, 1) is a ratio of the total steps (transformers 5)
        logging_strategy="no", report_to=[], seed=SEED, use_cpu=args.device == "cpu", disable_tqdm=True)
    trainer = Trainer(model=fresh_model(shape, args.device), args=targs, train_dataset=train,
                      data_collator=DataCollatorWithPadding(tokenizer))
    synchronize(torch.device(args.device))
    start = time.perf_counter()
    trainer.train()
    synchronize(torch.device(args.device))
    return len(rows) / (time.perf_counter() - start)


def arm_project(args, rows, shape, tokenizer, work) -> float:
    from stilts_lab.pipeline import run
    from stilts_lab.compose import compose_config
    cfg = compose_config(project_overrides(args, shape, work) + [f"+output_dir={work / 'project'}"])
    metrics = run(cfg)
    if metrics["status"] == "failed" or not metrics["examples_per_second"]:
        raise RuntimeError(f"the project's trial failed: {metrics['error']}")
    assert metrics["split"]["train_examples"] == len(rows), "the project trained on other data than the arms"
    return float(metrics["examples_per_second"])


def warm_up(args, shape: Path) -> None:
    """CUDA context, cuBLAS handles and kernel caches, so the first arm does not pay them."""
    model = fresh_model(shape, args.device)
    ids = torch.randint(5, 100, (args.batch_size, 32), device=args.device)
    with torch.autocast(device_type=args.device, dtype=torch.bfloat16):
        model(input_ids=ids, labels=torch.zeros(args.batch_size, dtype=torch.long, device=args.device)).loss.backward()
    synchronize(torch.device(args.device))
    del model


def time_grid(args, jobs: int, work: Path) -> dict:
    """The paper's grid (2 seeds x 3 lrs x 3 batch sizes x 2 warmups = 36 trials) on RTE in the MiniLM shape,
    3 epochs, as one sweep through the CLI, from start to exit. --tiny: a 2-trial sweep on 32 examples."""
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    cmd = [sys.executable, "-m", "stilts_lab", "-m", "model=minilm_l6", "model.random_init=true", "trainer=gpu",
           f"trainer.accelerator={accelerator}", "trainer.enable_progress_bar=false", "target=rte", "intermediate=none",
           "resume=false", f"paths.data_dir={args.data_dir}", f"paths.cache_dir={work / 'cache'}",
           f"hydra.sweep.dir={work / f'grid-{jobs}'}"]
    if args.tiny:
        cmd += ["seed=12,42", "target.train_size=32", "target.eval_size=32", "trainer.max_epochs=1"]
    else:
        cmd += ["+experiment=paper_grid", "trainer.max_epochs=3"]
    if jobs > 1:
        cmd += ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    done = sorted((work / f"grid-{jobs}").glob("*/metrics.json"))
    statuses = [json.loads(p.read_text())["status"] for p in done]
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
    return {"jobs": jobs, "seconds": round(seconds, 1), "trials": len(done), "exit_code": proc.returncode,
            "failed": statuses.count("failed"), "command": " ".join(cmd[1:])}


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpu-throughput-"))
    shape = shape_dir(args, work)
    family = "bert-uncased" if "minilm" in args.shape else "roberta"
    tokenizer = load_tokenizer(with_bpe_vocab(str(SHAPES / "tokenizers" / family)))
    rows = rte_train(args, shape, work, tokenizer)
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"device {device_name}, torch {torch.__version__}, shape {args.shape}{' (tiny)' if args.tiny else ''}, "
          f"RTE train {len(rows)} examples, batch {args.batch_size}, max_length {args.max_length}", flush=True)
    warm_up(args, shape)
    arms = {"original": arm_original, "hf": arm_hf, "bare": arm_bare, "project": arm_project}
    results = {}
    for name in args.arms:
        results[name] = round(arms[name](args, rows, shape, tokenizer, work), 2)
        print(f"  {name:9s} {results[name]:9.2f} train ex/s", flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print(f"\n{'arm':9s} {'ex/s':>9s} {'x original':>11s} {'x bare':>8s}")
    for name, rate in results.items():
        vs_orig = f"{rate / results['original']:.2f}" if "original" in results else "-"
        vs_bare = f"{rate / results['bare']:.2f}" if "bare" in results else "-"
        print(f"{name:9s} {rate:9.2f} {vs_orig:>11s} {vs_bare:>8s}")
    grids = []
    for jobs in args.grid_jobs:
        grids.append(time_grid(args, jobs, work))
        g = grids[-1]
        print(f"\ngrid ({'2-trial smoke sweep' if args.tiny else '36 trials, MiniLM shape, 3 epochs'}, {jobs} at once): "
              f"{g['seconds']:.1f} s, {g['trials']} trials, {g['failed']} failed, exit code {g['exit_code']}", flush=True)
    out = Path(args.out or os.environ.get("OUT") or REPO / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    record = {"device": device_name, "torch": torch.__version__, "shape": args.shape, "tiny": args.tiny,
              "examples": len(rows), "batch_size": args.batch_size, "max_length": args.max_length,
              "train_examples_per_second": results, "grid": grids}
    (out / f"gpu_throughput-{args.device}{'-tiny' if args.tiny else ''}.json").write_text(json.dumps(record, indent=2))
    return 1 if any(g["exit_code"] or g["failed"] for g in grids) else 0


if __name__ == "__main__":
    sys.exit(main())
