#!/usr/bin/env bash
# Time to quality of the demo's DiT recipe (issue 19): the demo's camcan cohort, split and grid, the DiT
# trained at several step budgets (each its own run: the learning-rate schedule follows the budget),
# 100 samples each, judged against the held-out subjects exactly as the demo judges its own run.
#   bash scripts/time_to_quality.sh OUT [STEPS...]        (default STEPS: 500 1000 1500 3000)
# Then: python scripts/time_to_quality.py OUT docs/figures/time_to_quality.png
set -euo pipefail
OUT=${1:?usage: time_to_quality.sh OUT [STEPS...]}
shift
STEPS=("${@:-500 1000 1500 3000}")
read -r -a STEPS <<<"${STEPS[*]}"
ND=${NEURODIT:-neurodit}
mkdir -p "$OUT"
[ -d "$OUT/camcan" ] || $ND phantom --cohort camcan --n 200 --out "$OUT/camcan" --seed 0 --voxel-size 4
[ -d "$OUT/split" ] || $ND split "$OUT/camcan" --out "$OUT/split" --heldout-fraction 0.2 --seed 0
for side in train heldout; do
  [ -d "$OUT/prep_$side" ] || $ND prepare "$OUT/split/$side" --out "$OUT/prep_$side" --shape 32 32 32
  [ -d "$OUT/real_$side" ] || $ND export "$OUT/prep_$side" --out "$OUT/real_$side"
done
for s in "${STEPS[@]}"; do
  [ -f "$OUT/run-$s/run.json" ] || $ND train "$OUT/prep_train" --out "$OUT/run-$s" --preset tiny-p32 --seed 0 \
    --max-steps "$s" --overwrite
  [ -d "$OUT/syn-$s" ] || $ND sample "$OUT/run-$s" --n 100 --out "$OUT/syn-$s" --steps 25 --guidance 1.5 --seed 0
  [ -f "$OUT/eval-$s/metrics.json" ] || $ND evaluate --real "$OUT/real_heldout" --synthetic "$OUT/syn-$s" \
    --train "$OUT/real_train" --out "$OUT/eval-$s" --max-pairs 300 --permutations 200 --seed 0 \
    --encoder-cache "$OUT/cache"
done
