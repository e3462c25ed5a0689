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
# Roughly 15 minutes on 2 CPU cores (1 thread: OMP_NUM_THREADS=1). Re-running skips finished pre-trainings.
# SEEDS (default "0") and BATCHES (default "32 64 128") select more seeds or fewer batches,
# e.g. SEEDS="1 2" BATCHES=32; the report then gives mean ± std over seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

T=${TRIBYOL:-.venv/bin/tribyol}
OUT=${OUT:-results/small_batch_fmnist}
RUNS=$OUT/runs
STORE=(--store "$OUT/results.jsonl" --cache-dir "$OUT/cache")
EVAL=(--dataset fashionmnist --limit-train 10000 --limit-test 5000)
SEEDS=${SEEDS:-0}
BATCHES=${BATCHES:-32 64 128}
COMMON=(--dataset fashionmnist --limit 10000 --backbone convnet
        --set optim.lr=0.05 --set train.progress_bar=false --runs-root "$RUNS")

pre() {  # name, then pretrain flags; skipped when the run already finished
  local name=$1; shift
  [ -f "$RUNS/$name/checkpoints/last.ckpt" ] || $T pretrain "${COMMON[@]}" --name "$name" "$@"
  $T eval linear "$RUNS/$name" "${EVAL[@]}" "${STORE[@]}"
  $T eval knn "$RUNS/$name" "${EVAL[@]}" "${STORE[@]}"
}

for s in $SEEDS; do
  tag=$([ "$s" = 0 ] && echo "" || echo "_s$s")  # seed 0 keeps the original run names
  for b in $BATCHES; do
    pre "tribyol_b$b$tag" --method tribyol --batch-size "$b" --epochs 2 --seed "$s"
    pre "byol_b$b$tag" --method byol --batch-size "$b" --epochs 2 --seed "$s"
    pre "byol-3ep_b$b$tag" --method byol --batch-size "$b" --epochs 3 --seed "$s"
  done
done
$T eval linear "$RUNS/tribyol_b32" --random-init "${EVAL[@]}" "${STORE[@]}"
$T report --store "$OUT/results.jsonl" --out "$OUT/report" --tsne-plots 2
