#!/usr/bin/env bash
# The poster's question at CPU scale: how do TriBYOL and BYOL hold up as the batch shrinks?
#
# Fashion-MNIST (real, from Debian's dataset-fashion-mnist or torchvision's files), ConvNet
# (width 32), 10,000 pre-training images, batch 32 / 64 / 128, SGD lr 0.05 (not rescaled with
# the batch), seed 0. Rows:
#   tribyol     2 epochs                  (equal epochs)
#   byol        2 epochs                  (equal epochs)
#   byol-3ep    3 epochs                  (equal compute: TriBYOL runs 6 network passes per
#                                          step to BYOL's 4, so 3 BYOL epochs = 2 TriBYOL ones)
# Each encoder is scored by the linear probe (penalty chosen on a validation split of train)
# and by kNN on the test split (10,000 train / 5,000 test images); then `tribyol report`.
# Roughly 25 minutes on 2 CPU cores. Re-running skips finished pre-trainings.
set -euo pipefail
cd "$(dirname "$0")/.."

T=${TRIBYOL:-.venv/bin/tribyol}
OUT=${OUT:-results/small_batch_fmnist}
RUNS=$OUT/runs
STORE=(--store "$OUT/results.jsonl" --cache-dir "$OUT/cache")
EVAL=(--dataset fashionmnist --limit-train 10000 --limit-test 5000)
COMMON=(--dataset fashionmnist --limit 10000 --backbone convnet --seed 0
        --set optim.lr=0.05 --set train.progress_bar=false --run-dir "$RUNS")

pre() {  # name, then pretrain flags; skipped when the run already finished
  local name=$1; shift
  [ -f "$RUNS/$name/checkpoints/last.ckpt" ] || $T pretrain "${COMMON[@]}" --name "$name" "$@"
  $T eval linear "$RUNS/$name" "${EVAL[@]}" "${STORE[@]}"
  $T eval knn "$RUNS/$name" "${EVAL[@]}" "${STORE[@]}"
}

for b in 32 64 128; do
  pre "tribyol_b$b" --method tribyol --batch-size "$b" --epochs 2
  pre "byol_b$b" --method byol --batch-size "$b" --epochs 2
  pre "byol-3ep_b$b" --method byol --batch-size "$b" --epochs 3
done
$T eval linear "$RUNS/tribyol_b32" --random-init "${EVAL[@]}" "${STORE[@]}"
$T report --store "$OUT/results.jsonl" --out "$OUT/report" --tsne-plots 2
