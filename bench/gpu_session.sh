#!/usr/bin/env bash
# The whole GPU check, as ONE device-tool call (prepare first, here: bash bench/gpu_prepare.sh):
#   run: bash bench/gpu_session.sh      carry: [".whl", ".gpu_data"]      timeout_s: 580
# BENCH_DEVICE/BENCH_ARGS exist for a dry run here: ACCEL=cpu BENCH_DEVICE=cpu BENCH_ARGS="--device cpu --tiny".
# Every step has its own timeout and everything goes through `tee $OUT/log`, so a killed step still
# leaves the log of the ones before it. Results: $OUT/log and $OUT/gpu_throughput-cuda.json.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 STILTS_DATA_DIR="$PWD/.gpu_data"
OUT=${OUT:-/tmp/stilts-gpu-out}; mkdir -p "$OUT"
PY=${PY:-python3}
ACCEL=${ACCEL:-gpu}   # a dry run of this script's logic on a CPU: ACCEL=cpu BENCH_ARGS="--device cpu --tiny"
step() { local limit=$1; shift; echo "== $(date +%T) [$limit s] $*"; timeout "$limit" "$@"; echo "== exit $?"; }
{
  if [ -d .whl ] && ! "$PY" -c "import hydra, datasets" 2>/dev/null; then
    step 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  [ "$ACCEL" = gpu ] && step 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  step 60 "$PY" -c "import torch, transformers, lightning, hydra, datasets, stilts_lab.pipeline; print(torch.__version__, transformers.__version__, lightning.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  # 1. the bug of issue 7: trainer=gpu (bf16-mixed, clip 1.0, fused AdamW), both stages, on the GPU
  step 120 "$PY" -m stilts_lab model=roberta_large model.random_init=true trainer=gpu trainer.accelerator=$ACCEL target=rte \
      trainer.max_epochs=1 data.batch_size=16 target.train_size=256 trainer.enable_progress_bar=false \
      hydra.run.dir="$OUT/run_gpu"
  # 2. what clipping before the fused step costs, roberta-large shape
  step 60 "$PY" bench/step_overhead.py --device ${BENCH_DEVICE:-cuda} --shape roberta-large
  # 3. four arms side by side (roberta-large shape, RTE train, batch 16, length 128) and the 36-trial grid
  step 420 "$PY" bench/gpu_throughput.py --out "$OUT" ${BENCH_ARGS:-}
} 2>&1 | tee -a "$OUT/log"
