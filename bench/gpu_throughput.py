"""Train throughput side by side, in one run: four ways to fine-tune the same encoder shape on the same
data (RTE train), batch size and max_length, and the wall time of the paper's 36-trial grid as one sweep.

    python bench/gpu_throughput.py                          # one GPU: roberta-large shape, batch 16, length 128
    python bench/gpu_throughput.py --grid-jobs 1 4          # also the grid with 4 trials at once on the GPU
    python bench/gpu_throughput.py --device cpu --tiny      # CPU smoke test (CI): a 2-layer shape, 64 examples

Arms (bench/arms.py, all timed alike: collation inside the clock, the last of 2 epochs, the device
synchronized, repeats interleaved, median and range):
  original  the 2021 recipe: fp32 (no TF32), every batch padded to max_length, random order, AdamW
  hf        transformers' Trainer: bf16, padding to a multiple of 8, group_by_length
  bare      a bare bf16 loop: length buckets, padding to a multiple of 8, fused AdamW, no host syncs
  project   this project's own trial (pipeline.run, trainer=gpu), its last epoch read from metrics.json
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
from transformers import AutoConfig

from stilts_lab.data.datamodule import TaskDataModule
from stilts_lab.models.encoder import SHAPES, load_tokenizer, with_bpe_vocab

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arms as A  # noqa: E402  (bench/arms.py, beside this script)

REPO = Path(__file__).resolve().parents[1]
SEED = A.SEED
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
    p.add_argument("--epochs", type=int, default=2, help="epochs per arm; the last one is timed")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; --tiny 1)")
    p.add_argument("--grid-jobs", type=int, nargs="*", default=[1],
                   help="time the grid once per value (trials at once on the device); none: skip it")
    p.add_argument("--data-dir", default=os.environ.get("STILTS_DATA_DIR"))
    p.add_argument("--out", default=None, help="JSON of the results (default: $OUT or bench/results)")
    args = p.parse_args()
    if not args.data_dir or not (Path(args.data_dir) / "rte" / "train.tsv").is_file():
        p.error("set STILTS_DATA_DIR (or --data-dir) to a data root holding rte/train.tsv")
    if args.tiny:
        args.limit = args.limit or 64
    args.repeats = args.repeats or (1 if args.tiny else 3)
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
            "trainer=gpu", f"trainer.accelerator={accelerator}", "trainer.enable_progress_bar=false",
            "target=rte", f"target.max_length={args.max_length}", f"target.train_size={args.limit or 'null'}",
            "target.eval_size=64", f"data.batch_size={args.batch_size}", f"optim.lr={A.LR}", f"optim.warmup_ratio={A.WARMUP}",
            f"seed={SEED}", f"paths.data_dir={args.data_dir}", f"paths.cache_dir={work / 'cache'}"]


def rte_train(args, shape: Path, work: Path, tokenizer) -> list[dict]:
    """RTE train tokenized once by the project's own data path (same truncation for every arm)."""
    from stilts_lab.compose import compose_config
    cfg = compose_config(project_overrides(args, shape, work))
    from omegaconf import OmegaConf
    data = TaskDataModule(OmegaConf.to_container(cfg.target, resolve=True), tokenizer, batch_size=args.batch_size,
                          seed=SEED, split_seed=int(cfg.data.split_seed), data_dir=args.data_dir, cache_dir=str(work / "cache"))
    data.setup()
    keep = [k for k in ("input_ids", "token_type_ids", "label") if k in data.train_set.column_names]
    return [{k: row[k] for k in keep} for row in data.train_set]


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
          f"RTE train {len(rows)} examples, batch {args.batch_size}, max_length {args.max_length}, "
          f"epoch {args.epochs} of {args.epochs} timed, {args.repeats} interleaved repeat(s)", flush=True)
    bench = A.Bench(rows=rows, tokenizer=tokenizer, model_source=str(shape), random_init=True, device=args.device,
                    batch_size=args.batch_size, max_length=args.max_length, epochs=args.epochs,
                    project_overrides=project_overrides(args, shape, work), work=work)
    all_arms = {"original": A.original, "hf": lambda b: A.hf(b, bf16=True), "bare": lambda b: A.bare(b, bf16=True),
                "project": A.project}
    out = Path(args.out or os.environ.get("OUT") or REPO / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"gpu_throughput-{args.device}{'-tiny' if args.tiny else ''}.json"
    header = {"device": device_name, "torch": torch.__version__, "shape": args.shape, "tiny": args.tiny,
              "examples": len(rows), "batch_size": args.batch_size, "max_length": args.max_length,
              "epochs": args.epochs, "timed": "last epoch", "repeats": args.repeats}
    stats = A.measure(bench, {name: all_arms[name] for name in args.arms}, args.repeats, json_path, header)
    A.print_table(stats, mine="project" if "project" in stats else args.arms[0])
    grids = []
    for jobs in args.grid_jobs:
        grids.append(time_grid(args, jobs, work))
        g = grids[-1]
        print(f"\ngrid ({'2-trial smoke sweep' if args.tiny else '36 trials, MiniLM shape, 3 epochs'}, {jobs} at once): "
              f"{g['seconds']:.1f} s, {g['trials']} trials, {g['failed']} failed, exit code {g['exit_code']}", flush=True)
        json_path.write_text(json.dumps(header | {"train_examples_per_second": stats, "grid": grids}, indent=2))
    return 1 if any(g["exit_code"] or g["failed"] for g in grids) else 0


if __name__ == "__main__":
    sys.exit(main())
