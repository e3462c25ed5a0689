#!/usr/bin/env bash
# TriBYOL vs BYOL on real 256-px aerial tiles (UC Merced Land Use) at a small batch, on CPU.
#
# Data: ../shared/data/uc_merced.tar.gz (2,100 tiles, 21 classes), read by the `ucmerced` preset:
# a fixed, seeded, stratified 80/20 split (1,680 train / 420 test, the identical airplane01/02
# pair on one side; its file lists go to $OUT/split.json). Pre-training sees only the 80 %;
# every score is on the held-out 20 %.
# Rows, for each seed in SEEDS (default "0 1"): TriBYOL $EPOCHS epochs; BYOL $EPOCHS epochs (equal
# epochs); BYOL 1.5x $EPOCHS epochs (equal compute: TriBYOL runs 6 network passes per step to
# BYOL's 4); each scored by a linear probe and by fine-tuning with 10 % and 100 % of the train
# labels; plus the random-init encoder under the same three protocols. Then `tribyol report`.
#
# Scale for 2 CPU cores: ResNet-18 with the standard 7x7 stem (forced: 64 px would pick the
# small stem, 16x the compute), views at VIEW px (default 64) cropped from the 256-px tiles,
# batch BATCH (default 16), EPOCHS (default 6) epochs = 630 steps, SGD lr 0.05; fine-tuning
# FT_EPOCHS (default 5) epochs.
# Estimated cost (from short timings of a few steps, not kept; an estimate, not a measurement):
# pre-training 6 runs ~5,300 CPU-s, evaluations ~2,000 CPU-s, in all ~7,500 CPU-s: about 65-75
# minutes with both cores free. Measured: EPOCHS=3 FT_EPOCHS=2 took 28 minutes of wall time
# beside two other jobs (BENCHMARKS.md "UC Merced"). The ImageNet-style setting (224 px, ResNet-50) needs a GPU: VIEW=224 BACKBONE=resnet50.
#
# Quick check of the whole pipeline on a tiny budget (first pre-training only, 3 steps,
# small evaluations, about 2 minutes):
#   MAX_STEPS=3 FIRST_ONLY=1 FT_EPOCHS=1 LIMIT_TRAIN=210 LIMIT_TEST=105 OUT=/tmp/ucm-smoke \
#       experiments/ucmerced.sh
set -euo pipefail
cd "$(dirname "$0")/.."

T=${TRIBYOL:-.venv/bin/tribyol}
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/ucmerced}
UCM_TAR=${UCM_TAR:-../shared/data/uc_merced.tar.gz}  # relative to the repository
DATA=${DATA:-/tmp/tribyol-ucmerced}  # gets uc_merced/<class>/<file>.jpg
RUNS=$OUT/runs
SEEDS=${SEEDS:-0 1}
BATCH=${BATCH:-16}
EPOCHS=${EPOCHS:-6}
EPOCHS_BYOL_EQ=${EPOCHS_BYOL_EQ:-$(( (EPOCHS * 3 + 1) / 2 ))}  # 1.5x, rounded up
VIEW=${VIEW:-64}
BACKBONE=${BACKBONE:-resnet18}
FT_EPOCHS=${FT_EPOCHS:-5}
MAX_STEPS=${MAX_STEPS:-}  # > 0: stop every pre-training after this many steps (smoke tests)
FIRST_ONLY=${FIRST_ONLY:-}  # non-empty: only the first pre-training, its evaluations, the report

STORE=(--store "$OUT/results.jsonl" --cache-dir "$OUT/cache")
EVAL=(--dataset ucmerced --data-root "$DATA")
[ -n "${LIMIT_TRAIN:-}" ] && EVAL+=(--limit-train "$LIMIT_TRAIN")
[ -n "${LIMIT_TEST:-}" ] && EVAL+=(--limit-test "$LIMIT_TEST")
COMMON=(--dataset ucmerced --data-root "$DATA" --backbone "$BACKBONE" --batch-size "$BATCH"
        --set data.image_size="$VIEW" --set model.small_stem=false --set optim.lr=0.05
        --set train.progress_bar=false --runs-root "$RUNS")
[ -n "$MAX_STEPS" ] && COMMON+=(--max-steps "$MAX_STEPS")

if [ ! -d "$DATA/uc_merced" ]; then
  mkdir -p "$DATA" && tar -xzf "$UCM_TAR" -C "$DATA"
fi
mkdir -p "$OUT"
"$PY" -m tribyol.data ucmerced-split "$DATA" "$OUT/split.json"  # the split's file lists and seed

evaluate() {  # source, seed, then extra flags (e.g. --random-init)
  local src=$1 seed=$2; shift 2
  $T eval linear "$src" "${EVAL[@]}" "${STORE[@]}" --seed "$seed" "$@"
  for fraction in 0.1 1.0; do
    $T eval finetune "$src" "${EVAL[@]}" "${STORE[@]}" --seed "$seed" \
      --label-fraction "$fraction" --epochs "$FT_EPOCHS" "$@"
  done
}

pre() {  # name, seed, then pretrain flags; a finished run is not redone
  local name=$1 seed=$2; shift 2
  [ -f "$RUNS/$name/checkpoints/last.ckpt" ] || \
    $T pretrain "${COMMON[@]}" --name "$name" --seed "$seed" "$@"
  evaluate "$RUNS/$name" "$seed"
}

first=""
for s in $SEEDS; do
  pre "tribyol_b${BATCH}_s$s" "$s" --method tribyol --epochs "$EPOCHS"
  first=${first:-tribyol_b${BATCH}_s$s}
  [ -n "$FIRST_ONLY" ] && break
  pre "byol_b${BATCH}_s$s" "$s" --method byol --epochs "$EPOCHS"
  pre "byol-${EPOCHS_BYOL_EQ}ep_b${BATCH}_s$s" "$s" --method byol --epochs "$EPOCHS_BYOL_EQ"
done
[ -n "$FIRST_ONLY" ] || evaluate "$RUNS/$first" 0 --random-init
$T report --store "$OUT/results.jsonl" --out "$OUT/report" --tsne-plots 2
