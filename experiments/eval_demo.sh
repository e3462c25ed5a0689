#!/usr/bin/env bash
# Evaluation demo at CPU scale: short real pre-trainings, every evaluation protocol, the report.
#
#   Fashion-MNIST (found at /usr/share/datasets/fashion-mnist): TriBYOL at batch 32 and 64,
#     BYOL at batch 32; 10,000 images, 2 epochs, SGD lr 0.05, ConvNet; online kNN monitor on a
#     5 % held-out split.
#   CIFAR-10 (real train JPEGs, no test split): the test set is carved from train
#     (--test-from-train 0.2, seeded, stratified); TriBYOL at batch 32, 2 epochs, on 300 images
#     per class taken from the other 80 % only (experiments/pretrain_subset.py).
#   Evaluations use seeded, stratified subsets (--limit-train / --limit-test) to stay small;
#     fine-tuning draws its 1 % / 10 % label subsets from that 10,000-image training pool.
#
# Roughly 10-15 minutes on 2 CPU cores. Re-running skips finished pre-trainings; the
# feature cache makes repeated evaluations cheap. Override OUT, CIFAR or TRIBYOL from the env.
set -euo pipefail
cd "$(dirname "$0")/.."

T=${TRIBYOL:-.venv/bin/tribyol}
OUT=${OUT:-results/eval_demo}
CIFAR_TAR=${CIFAR_TAR:-../shared/data/cifar10-train.tar.gz}  # relative to the repository
CIFAR=${CIFAR:-/tmp/tribyol-cifar10}
RUNS=$OUT/runs
STORE=(--store "$OUT/results.jsonl" --cache-dir "$OUT/cache")
FM=(--dataset fashionmnist --limit-train 10000 --limit-test 2000)

pre() {  # pre-train unless this run already finished
  local name=$1; shift
  if [ ! -f "$RUNS/$name/checkpoints/last.ckpt" ]; then
    $T pretrain --runs-root "$RUNS" --name "$name" --backbone convnet --epochs 2 \
      --set optim.lr=0.05 --set train.progress_bar=false "$@"
  fi
}

# --- pre-training -------------------------------------------------------------------------------
MON=(--set data.monitor_fraction=0.05 --set train.knn_every_epochs=1)
pre fm_tribyol_b32 --method tribyol --dataset fashionmnist --limit 10000 --batch-size 32 "${MON[@]}"
pre fm_tribyol_b64 --method tribyol --dataset fashionmnist --limit 10000 --batch-size 64 "${MON[@]}"
pre fm_byol_b32 --method byol --dataset fashionmnist --limit 10000 --batch-size 32 "${MON[@]}"

if [ ! -d "$CIFAR/train" ]; then
  mkdir -p "$CIFAR" && tar -xzf "$CIFAR_TAR" -C "$CIFAR"
fi
# Pre-training subset: 300 images per class from outside the test split that the evaluations
# below carve (--test-from-train 0.2, seed 0): no test image is seen, even unlabelled.
SUB=$CIFAR-pretrain300
if [ ! -d "$SUB/train" ]; then
  ${PYTHON:-.venv/bin/python} experiments/pretrain_subset.py "$CIFAR" "$SUB" --per-class 300 \
    --test-fraction 0.2 --seed 0
fi
pre c10_tribyol_b32 --method tribyol --dataset folder --data-root "$SUB" --batch-size 32 \
  --set data.image_size=32

# --- evaluation ---------------------------------------------------------------------------------
for run in fm_tribyol_b32 fm_tribyol_b64 fm_byol_b32; do
  $T eval linear "$RUNS/$run" "${FM[@]}" "${STORE[@]}"
  $T eval knn "$RUNS/$run" "${FM[@]}" "${STORE[@]}"
done
$T eval linear "$RUNS/fm_tribyol_b32" "${FM[@]}" "${STORE[@]}" --random-init

# 1 % and 10 % of the labels (from the 10,000-image pool), and all of them; the same seeded,
# stratified subsets (index files in results/splits) for every encoder.
for init in "" --random-init; do
  for run in fm_tribyol_b32 fm_byol_b32; do
    [ -n "$init" ] && [ "$run" = fm_byol_b32 ] && continue  # one random-init encoder is enough
    $T eval finetune "$RUNS/$run" "${FM[@]}" "${STORE[@]}" --label-fraction 0.01 --epochs 20 $init
    $T eval finetune "$RUNS/$run" "${FM[@]}" "${STORE[@]}" --label-fraction 0.1 --epochs 5 $init
    $T eval finetune "$RUNS/$run" "${FM[@]}" "${STORE[@]}" --label-fraction 1.0 --epochs 2 $init
  done
done

C10=(--dataset folder --data-root "$CIFAR" --test-from-train 0.2 --dataset-label cifar10
     --limit-train 5000 --limit-test 2000)
$T eval linear "$RUNS/c10_tribyol_b32" "${C10[@]}" "${STORE[@]}"
$T eval knn "$RUNS/c10_tribyol_b32" "${C10[@]}" "${STORE[@]}"
$T eval linear "$RUNS/c10_tribyol_b32" "${C10[@]}" "${STORE[@]}" --random-init

# Real MNIST and USPS from ../shared/data, laid out as the readers expect (MNIST unpacked).
SHARED=${SHARED:-../shared/data}
DATA=${DATA:-/tmp/tribyol-data}
if [ -d "$SHARED/MNIST/raw" ] && [ ! -d "$DATA/MNIST/raw" ]; then
  mkdir -p "$DATA/MNIST/raw"
  for f in "$SHARED"/MNIST/raw/*.gz; do gunzip -c "$f" > "$DATA/MNIST/raw/$(basename "${f%.gz}")"; done
fi
mkdir -p "$DATA"
# Link USPS in where nothing of that name is yet: never replace a file already in $DATA.
for f in "$SHARED"/USPS/usps*.bz2; do
  [ -e "$f" ] && [ ! -e "$DATA/$(basename "$f")" ] && ln -s "$(realpath "$f")" "$DATA/"
done

# One table per source; only the datasets on disk are evaluated, the rest say what is missing.
$T eval transfer "$RUNS/fm_tribyol_b32" "$RUNS/c10_tribyol_b32" --data-root "$DATA" --limit-train 10000 \
  --limit-test 2000 "${STORE[@]}" --targets mnist,fashionmnist,kmnist,usps,svhn,cifar10,cifar100,stl10,digits

$T report --store "$OUT/results.jsonl" --out "$OUT/report"
