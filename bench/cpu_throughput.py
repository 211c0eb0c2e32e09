"""CPU train throughput against the peers, in one run: the embedded MiniLM on RTE train (full), batch 16,
max_length 100, every arm timed alike (bench/arms.py: collation inside the clock, the last of 2 epochs,
repeats interleaved, median and range).

    python bench/cpu_throughput.py                 # make bench-cpu: full RTE train, 2 interleaved repeats
    python bench/cpu_throughput.py --tiny          # smoke run (CI): 32 examples, 1 repeat

Arms: original (fp32, padded to max_length), hf_fp32, hf_bf16 (transformers' Trainer), bare_fp32, bare_bf16
(a bare loop), project (this project's trial, trainer=cpu as configured: bf16 autocast where the CPU has
native bf16), project_fp32 (trainer.precision=32-true, the default before). Prints ex/s and the project's
ratio to each arm; writes a JSON beside it."""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stilts_lab.compose import compose_config
from stilts_lab.data.datamodule import TaskDataModule
from stilts_lab.models.encoder import load_tokenizer, resolve_pretrained, resolve_tokenizer
from stilts_lab.environment import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arms as A  # noqa: E402  (bench/arms.py, beside this script)

REPO = Path(__file__).resolve().parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="32 examples, 1 repeat: a smoke test")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=100)
    p.add_argument("--limit", type=int, default=None, help="train examples (default: all of RTE train)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per arm; the last one is timed")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 2; --tiny 1)")
    p.add_argument("--arms", nargs="+", default=None, help="a subset of the arms, in this order")
    p.add_argument("--data-dir", default=os.environ.get("STILTS_DATA_DIR"))
    p.add_argument("--out", default=None, help="folder for the JSON (default: $OUT or bench/results)")
    args = p.parse_args()
    if not args.data_dir or not (Path(args.data_dir) / "rte" / "train.tsv").is_file():
        p.error("set STILTS_DATA_DIR (or --data-dir) to a data root holding rte/train.tsv")
    if args.tiny:
        args.limit = args.limit or 32
    args.repeats = args.repeats or (1 if args.tiny else 2)
    return args


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="cpu-throughput-"))
    overrides = ["trainer=cpu", "target=rte", "intermediate=none", f"target.max_length={args.max_length}",
                 f"target.train_size={args.limit or 'null'}", "target.eval_size=32", f"data.batch_size={args.batch_size}",
                 f"optim.lr={A.LR}", f"optim.warmup_ratio={A.WARMUP}", "trainer.enable_progress_bar=false",
                 f"seed={A.SEED}", f"paths.data_dir={args.data_dir}", f"paths.cache_dir={work / 'cache'}"]
    cfg = compose_config(overrides)
    tokenizer = load_tokenizer(resolve_tokenizer(cfg.model))
    data = TaskDataModule(OmegaConf.to_container(cfg.target, resolve=True), tokenizer, batch_size=args.batch_size,
                          seed=A.SEED, split_seed=int(cfg.data.split_seed), data_dir=args.data_dir,
                          cache_dir=str(work / "cache"))
    data.setup()  # the project's own tokenization, so every arm sees the same truncated rows
    keep = [k for k in ("input_ids", "token_type_ids", "label") if k in data.train_set.column_names]
    rows = [{k: row[k] for k in keep} for row in data.train_set]
    bench = A.Bench(rows=rows, tokenizer=tokenizer, model_source=resolve_pretrained(cfg.model), random_init=False,
                    device="cpu", batch_size=args.batch_size, max_length=args.max_length, epochs=args.epochs,
                    project_overrides=overrides, work=work)
    all_arms = {
        "original": A.original,
        "hf_fp32": functools.partial(A.hf, bf16=False), "hf_bf16": functools.partial(A.hf, bf16=True),
        "bare_fp32": functools.partial(A.bare, bf16=False), "bare_bf16": functools.partial(A.bare, bf16=True),
        "project": A.project,
        "project_fp32": functools.partial(A.project, extra=("trainer.precision=32-true",)),
    }
    # Asked for by name only (--arms project project_workers2): collation in 2 DataLoader workers
    # instead of the main process (issue 15: num_workers 0 collates serially).
    # The project's settings one at a time, to find where its step loses to the bare loop (docs/performance.md):
    # lengths padded to a multiple of 8 or 16 as the peers pad them, and a malloc_trim after every step (the
    # default until 2026-12-06).
    optional = {"project_workers2": functools.partial(A.project, extra=("data.num_workers=2",)),
                "project_pad8": functools.partial(A.project, extra=("trainer.pad_to_multiple_of=8",)),
                "project_pad16": functools.partial(A.project, extra=("trainer.pad_to_multiple_of=16",)),
                "project_trim1": functools.partial(A.project, extra=("trainer.malloc_trim_every_n_steps=1",))}
    arms = {name: (all_arms | optional)[name] for name in (args.arms or all_arms)}
    header = {"device": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "model": cfg.model.name, "examples": len(rows), "batch_size": args.batch_size,
              "max_length": args.max_length, "epochs": args.epochs, "timed": "last epoch", "repeats": args.repeats,
              "project_precision": str(cfg.trainer.precision), "tiny": args.tiny}
    print(f"cpu {header['device']} ({header['threads']} threads), torch {torch.__version__}, {cfg.model.name}, "
          f"RTE train {len(rows)} examples, batch {args.batch_size}, max_length {args.max_length}, "
          f"epoch {args.epochs} of {args.epochs} timed, {args.repeats} interleaved repeat(s)", flush=True)
    out = Path(args.out or os.environ.get("OUT") or REPO / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    stats = A.measure(bench, arms, args.repeats, out / f"cpu_throughput{'-tiny' if args.tiny else ''}.json", header)
    A.print_table(stats, mine="project" if "project" in stats else next(iter(stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
