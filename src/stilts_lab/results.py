"""metrics.json: one file per trial, the unit every report and resume check reads.

Schema (all keys always present; values may be null where they do not apply):
  config_hash        str    sha256 prefix of the resolved config minus where and how fast it runs (paths,
                            hydra, threads, progress bar, logger), plus data_files (resume matches on it)
  run_id             str    the command that wrote the file (STILTS_RUN_ID): a sweep's exit code counts the
                            failed trials of its own command only
  data_files         dict   sha256 of every data file the trial read, by stage and role, e.g.
                            "target.files.train", "intermediate.transforms.attach_label_file.label_file.eval"
  model              str    model config name, e.g. "minilm_l6"
  intermediate       str    intermediate task name, or "none" for vanilla fine-tuning
  target             str    target task name
  seed               int
  hparams            dict   target-stage hyperparameters: lr, batch_size, warmup_ratio, max_epochs,
                            weight_decay, train_size, eval_size, max_length
  metric_name        str    the task's main dev metric, e.g. "accuracy", "mcc", "pearson"
  dev_metric_per_epoch list[float]   main dev metric after each epoch
  dev_metrics_per_epoch list[dict]   every dev metric after each epoch
  best_dev_metric    float
  last_dev_metric    float
  trivial_baseline   float  the main metric of a constant prediction: the training set's majority
                            class (its most frequent position for multiple choice; 0 for mcc and
                            correlations); a trial whose best dev metric is at or below it is "diverged".
                            Files written before the rename hold it as majority_baseline (or, in an
                            intermediate stage's stage_metrics.json, chance_baseline): read_metrics
                            maps those to trivial_baseline
  train_seconds      float  target stage only
  examples_per_second float target-stage training examples processed per second
  intermediate_checkpoint {key, path, method, bytes, trainable_parameters} or null: bytes, the checkpoint's
                            files on disk (the whole encoder under method full, a LoRA adapter or bias
                            tensors: models/methods.py); trainable_parameters, its stage's (head included)
  method             dict   each stage's training method, {"intermediate": "full" | "lora" | "bitfit" | null
                            (no intermediate stage), "target": ...} (config groups intermediate/method, target/method)
  trainable_parameters int  the target stage's trained parameters (encoder under its method, plus the head)
  total_parameters   int    the target stage's parameters, trained or not
  split              dict   how train/eval were obtained: {"train": "...", "eval": "...", "carved": bool}
  status             "ok" | "diverged" | "failed" ("diverged": non-finite loss, or never above the trivial
                            baseline; best_dev_metric is null where the loss went non-finite before any dev pass)
  started_at, finished_at  str  UTC, ISO 8601 (seconds): when the trial began and ended
  error              str or null   the message of a failed trial
  config             dict   the whole resolved config
  versions           dict   python, torch, transformers, lightning, ...
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

METRICS_FILE = "metrics.json"
_PROCESS_RUN_ID = uuid.uuid4().hex[:12]


def run_id() -> str:
    """The command this process works for: STILTS_RUN_ID, which `python -m stilts_lab` sets before
    Hydra launches anything (sweep workers inherit it), else one id per process (tests, notebooks).
    Read, never set: importing a module must not change the environment."""
    return os.environ.get("STILTS_RUN_ID") or _PROCESS_RUN_ID


def write_json_atomic(path: Path, payload: dict) -> None:
    """Temp file in the same directory, then rename: a reader (or a resumed sweep) sees the old
    file or the new one, never half of one, even if the process is killed mid-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Earlier names of trivial_baseline, still read so older sweeps resume and report.
LEGACY_BASELINE_KEYS = ("majority_baseline", "chance_baseline")


def read_metrics(path: Path) -> dict | None:
    """None for a missing or unreadable file: such a trial counts as not done."""
    try:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(metrics, dict) and "trivial_baseline" not in metrics:
        for old in LEGACY_BASELINE_KEYS:
            if old in metrics:
                metrics["trivial_baseline"] = metrics.pop(old)
                break
    return metrics


def metrics_files(root: Path, max_depth: int = 3) -> list[Path]:
    """Every trial's metrics.json from `root` itself down to `max_depth` folders below it (a sweep's
    trials sit at depth 1; a sweep of sweeps deeper), shallowest first, sorted within each depth."""
    root = Path(root)
    found = [root / METRICS_FILE] if (root / METRICS_FILE).is_file() else []
    for depth in range(1, max_depth + 1):
        found += sorted(p for p in root.glob("/".join(["*"] * depth) + "/" + METRICS_FILE) if p.is_file())
    return found
