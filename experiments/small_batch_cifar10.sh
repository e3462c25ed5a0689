#!/usr/bin/env bash
# The poster's question on real CIFAR-10 images at CPU scale: TriBYOL vs BYOL at batch 32.
#
# The CIFAR-10 train JPEGs of ../shared/data (no test split there): a seeded, stratified 20 % is
# carved out as the test set (what `tribyol eval --test-from-train 0.2` carves, same seed), and
# pre-training uses the first 1,000 images per class of the remaining 80 %, so no test image is
# ever seen, even unlabelled. ConvNet (width 32), SGD lr 0.05, 10,000 images.
# Rows: TriBYOL 4 epochs (1,250 steps at b32); BYOL 4 epochs (equal epochs); BYOL 6 epochs
# (equal compute: TriBYOL runs 6 network passes per step to BYOL's 4). Linear probe and kNN on 10,000 train / 5,000
# test images (stratified subsets), plus the random-init encoder; then `tribyol report`.
# SEEDS (default "0 1 2") and BATCHES (default "32") select runs. ~15 minutes per seed on one CPU core.
set -euo pipefail
cd "$(dirname "$0")/.."

T=${TRIBYOL:-.venv/bin/tribyol}
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/small_batch_cifar10}
CIFAR_TAR=${CIFAR_TAR:-../shared/data/cifar10-train.tar.gz}  # relative to the repository
CIFAR=${CIFAR:-/tmp/tribyol-cifar10}
SUB=$CIFAR-pretrain1000
RUNS=$OUT/runs
SEEDS=${SEEDS:-0 1 2}
BATCHES=${BATCHES:-32}
STORE=(--store "$OUT/results.jsonl" --cache-dir "$OUT/cache")
EVAL=(--dataset folder --data-root "$CIFAR" --test-from-train 0.2 --dataset-label cifar10
      --limit-train 10000 --limit-test 5000)
COMMON=(--dataset folder --data-root "$SUB" --set data.image_size=32 --backbone convnet
        --set optim.lr=0.05 --set train.progress_bar=false --runs-root "$RUNS")

if [ ! -d "$CIFAR/train" ]; then
  mkdir -p "$CIFAR" && tar -xzf "$CIFAR_TAR" -C "$CIFAR"
fi
if [ ! -d "$SUB/train" ]; then
  "$PY" experiments/pretrain_subset.py "$CIFAR" "$SUB" --per-class 1000 --test-fraction 0.2 --seed 0
fi

pre() {  # name, then pretrain flags; skipped when the run already finished
  local name=$1; shift
  [ -f "$RUNS/$name/checkpoints/last.ckpt" ] || $T pretrain "${COMMON[@]}" --name "$name" "$@"
  $T eval linear "$RUNS/$name" "${EVAL[@]}" "${STORE[@]}"
  $T eval knn "$RUNS/$name" "${EVAL[@]}" "${STORE[@]}"
}

for s in $SEEDS; do
  for b in $BATCHES; do
    pre "tribyol_b${b}_s$s" --method tribyol --batch-size "$b" --epochs 4 --seed "$s"
    pre "byol_b${b}_s$s" --method byol --batch-size "$b" --epochs 4 --seed "$s"
    pre "byol-6ep_b${b}_s$s" --method byol --batch-size "$b" --epochs 6 --seed "$s"
  done
done
first=$(echo "$SEEDS" | awk '{print $1}')
$T eval linear "$RUNS/tribyol_b$(echo "$BATCHES" | awk '{print $1}')_s$first" --random-init "${EVAL[@]}" "${STORE[@]}"
$T report --store "$OUT/results.jsonl" --out "$OUT/report" --tsne-plots 2
