#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before a device session: it fills the two git-ignored folders that
# `bench/gpu_session.sh` needs there, and says how much will travel (the device tool carries 64 MiB at most).
#   .whl/       wheels of what the GPU image lacks (hydra, omegaconf, datasets, ...), for Python 3.12
#   .gpu_data/  the data files the session reads (RTE train and dev; COPA for the two-stage run)
# Then, through the device tool: run `bash bench/gpu_session.sh` with carry [".whl", ".gpu_data"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${STILTS_DATA_DIR:-../shared/data}
rm -rf .whl .gpu_data && mkdir -p .whl .gpu_data/rte .gpu_data/copa
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo /.gpu_data/ >> .git/info/exclude
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# pure-Python or py3.12 wheels; versions as in this project's own venv (omegaconf 2.3.0: hydra 1.3 needs < 2.4)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl \
  hydra-core==1.3.2 omegaconf==2.3.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  hydra-joblib-launcher==1.2.0 hydra-submitit-launcher==1.2.0 submitit==1.5.4
# antlr4-python3-runtime 4.9.3 is an sdist only: build its wheel here
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
cp "$DATA/rte/train.tsv" "$DATA/rte/dev.tsv" .gpu_data/rte/
cp "$DATA/copa/train.jsonl" "$DATA/copa/val.jsonl" .gpu_data/copa/
du -sh .whl .gpu_data
git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | awk '{printf "tracked files: %.1f MiB\n", $1/1048576}'
