#!/usr/bin/env bash
# The GPU check: run once on a lent GPU machine (torch + accelerate preinstalled, no network), from the
# repo root, with the missing wheels carried in .whl/ (see docs/GPU.md). Prints and writes under $OUT:
#   1. neurodit bench for XL-2-256 (random init; the DiT alone, bf16 autocast) and tiny-p32;
#   2. 20 training steps of the demo cohort through `accelerate launch` (tiny-p32 DiT, then ddpm3d);
#   3. sampling 16 volumes from each run.
# Not yet run on a GPU: no device was lent to the task that wrote it.
set -euo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m neurodit.cli bench --preset XL-2-256 --preset tiny-p32 --steps 10 --batch-size 32 \
  --out "$OUT/bench.json" | tee "$OUT/bench.txt"
W=/tmp/gpu_work
rm -rf "$W"
python3 -m neurodit.cli phantom --cohort camcan --n 200 --out "$W/camcan" --voxel-size 4 --seed 0
python3 -m neurodit.cli prepare "$W/camcan" --out "$W/prep" --shape 32 32 32
for gen in dit ddpm3d; do
  accelerate launch --num_processes 1 -m neurodit.cli train "$W/prep" --generator "$gen" \
    --out "$W/run_$gen" --max-steps 20 2>&1 | tee "$OUT/train_$gen.txt"
  python3 -m neurodit.cli sample "$W/run_$gen" --n 16 --out "$W/syn_$gen" | tee "$OUT/sample_$gen.txt"
  cp "$W/run_$gen/loss.csv" "$OUT/loss_$gen.csv"
done
echo "gpu check: done; results in $OUT"
