#!/usr/bin/env bash
# The whole GPU check, as ONE device-tool call (prepare first, here: bash bench/gpu_prepare.sh):
#   run: bash bench/gpu_session.sh      carry: [".whl", ".gpu_data"]      timeout_s: 580
# SMOKE=1 runs the same steps on a CPU with tiny shapes and sizes, in a few minutes (tests/test_bench.py).
# Every step has its own limit, cut to what is left of BUDGET (570 s): the session ends inside the call's
# 580 s, and the 36-trial grid, last, gets what remains. Everything goes through `tee $OUT/log`, so a killed
# step still leaves the log of the ones before it. Results: $OUT/log, $OUT/run_*/metrics.json and
# $OUT/gpu_throughput-cuda.json.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 STILTS_DATA_DIR=${STILTS_DATA_DIR:-$PWD/.gpu_data}
OUT=${OUT:-/tmp/stilts-gpu-out}; mkdir -p "$OUT"
CACHE=${CACHE:-/tmp/stilts-gpu-cache}   # checkpoints stay outside $OUT, which travels back
PY=${PY:-python3}
if [ "${SMOKE:-0}" = 1 ]; then  # a shared 2-core CPU imports and trains slowly: 4x every limit
  ACCEL=cpu; MODEL="model=minilm_l6 model.random_init=true target.eval_size=16"; N=16; DEVICE=cpu; SHAPE="minilm-l6 --steps 2"
  SCALE=4; BUDGET=${BUDGET:-2280}
  BENCH_ARGS="--device cpu --tiny --limit 16 --epochs 1"  # every arm and the 2-trial grid: tests/test_bench.py
else
  ACCEL=gpu; MODEL="model=roberta_large model.random_init=true"; N=256; DEVICE=cuda; SHAPE=roberta-large
  BENCH_ARGS=""; SCALE=1; BUDGET=${BUDGET:-570}
fi
END=$((SECONDS + BUDGET))
step() {  # step LIMIT CMD...: run CMD for at most LIMIT seconds, or what is left of the budget
  local limit=$(($1 * SCALE)); shift
  local left=$((END - SECONDS)); [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then echo "== skipped (budget spent): $*"; return; fi
  echo "== $(date +%T) [$limit s] $*"; timeout "$limit" "$@"; echo "== exit $?"
}
TRIAL=(trainer=gpu trainer.accelerator=$ACCEL target=rte target.train_size=$N trainer.max_epochs=1 data.batch_size=16
       trainer.enable_progress_bar=false paths.cache_dir="$CACHE")
{
  if [ -d .whl ] && ! "$PY" -c "import hydra, datasets" 2>/dev/null; then
    step 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  [ "$ACCEL" = gpu ] && step 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  step 60 "$PY" -c "import torch, transformers, lightning, hydra, datasets, stilts_lab.pipeline; print(torch.__version__, transformers.__version__, lightning.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  # 1. the bug of issue 7: trainer=gpu (bf16-mixed, clip 1.0, fused AdamW), the target stage alone
  step 90 "$PY" -m stilts_lab $MODEL "${TRIAL[@]}" hydra.run.dir="$OUT/run_gpu"
  # 2. both stages under trainer=gpu: an intermediate stage (COPA, multiple choice) trains, saves its
  #    checkpoint, and the target stage (RTE, classification) starts from it
  step 120 "$PY" -m stilts_lab $MODEL "${TRIAL[@]}" intermediate=copa intermediate.train_size=$N \
      intermediate.eval_size=64 intermediate.max_epochs=1 intermediate.batch_size=16 hydra.run.dir="$OUT/run_two_stages"
  # 3. what clipping before the fused step costs
  step 45 "$PY" bench/step_profile.py --optimizer-step --device $DEVICE --shape $SHAPE   # unquoted: SHAPE may carry --steps
  # 4. four arms side by side (roberta-large shape, RTE train, batch 16, length 128), then the 36-trial grid
  step 420 "$PY" bench/gpu_throughput.py --out "$OUT" $BENCH_ARGS
} 2>&1 | tee -a "$OUT/log"
