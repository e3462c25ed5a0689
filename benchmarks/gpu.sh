#!/usr/bin/env bash
# The one rehearsed GPU call (issue 24): <= 9 minutes on one H200, everything written to $OUT.
# Steps, in order, each under its own time cap (`timeout`), so one failure or overrun does not
# eat the rest (expected minutes on an H200, and how they were estimated: BENCHMARKS.md
# "GPU call (issue 24)"):
#   1. tests   GPU tests, tests/gpu/: the compiled step against eager on CUDA, and resume   cap  90 s
#   2. eager   throughput, compile off: TriBYOL + BYOL, ResNet-18, b32 + b128, separate passes cap  45 s
#      compiled  the same with train.compile=on (CUDA graphs)                               cap 110 s
#   3. packing 6 concurrent TriBYOL b32 runs against the same 6 one after another          cap  90 s
#   4. plan    the claim's epochs from steps 2-3's speed, printed (benchmarks/claim_plan.py) cap  15 s
#      claim   configs/grids/gpu_claim.yaml: ResNet-18, CIFAR-10 JPEGs, carved test split, b32,
#              TriBYOL / BYOL / BYOL at equal compute, 2 seeds, 6 cells packed; linear + kNN cap 185 s
#   5. summary OUT/summary.md: the tables of BENCHMARKS.md and RESULTS.md filled
# Caps add up to 535 s at worst (the archive is extracted in the background during step 1). $OUT receives 7 files (the device tool returns at most 8):
# gpu.log, steps.tsv, throughput_eager.json, throughput_compiled.json, packing.json,
# claim.tar.gz (the claim's grid folder without checkpoints or feature caches), summary.md.
#
# What the bare GPU machine lacks travels in .carry (`make carry`: the omegaconf wheel and the
# CIFAR-10 train archive); call it with carry [".carry"] (docs/reproduce.md "Packing").
#   bash benchmarks/gpu.sh              on a GPU (without one: the --smoke rehearsal)
#   bash benchmarks/gpu.sh --smoke      every step at seconds' scale on a CPU (CI runs this)
#   bash benchmarks/gpu.sh --full-grid  the earlier throughput grid (ResNet-18/50, b32-128, STL)
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT_DIR=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tribyol-gpu.XXXXXX")
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
. benchmarks/carried.sh  # omegaconf on a bare GPU machine (make carry)
exec > >(tee -a "$OUT_DIR/gpu.log") 2>&1
: > "$OUT_DIR/steps.tsv"

if [ "$MODE" = "--full-grid" ]; then  # the earlier session's grid (BENCHMARKS.md "GPU (H200)")
  B="$PY benchmarks/throughput.py --methods byol,tribyol --precisions auto --device cuda"
  $B --backbones resnet18,resnet50 --batches 32,64,128 --variants base,cl+concat --dataset cifar10 \
     --steps 15 --warmup 5 --rounds 1 --gpu-busy 5 --out "$OUT_DIR/gpu_cifar.json"
  $B --backbones resnet50 --batches 64 --variants base,cl+concat --dataset stl10 --steps 10 \
     --warmup 5 --rounds 1 --gpu-busy 5 --out "$OUT_DIR/gpu_stl.json"
  exit $?
fi
SMOKE=0
[ "$MODE" = "--smoke" ] && SMOKE=1
if [ $SMOKE = 0 ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no CUDA device: running the --smoke rehearsal instead"
  SMOKE=1
fi
FAILED=0
# step NAME CAP_S COMMAND...: run it under its cap (SIGINT first: a reproduce stops with a
# checkpoint; SIGKILL 15 s later), record exit code and seconds in steps.tsv.
step() {
  local name=$1 cap=$2 start rc
  shift 2
  echo "== step $name (cap ${cap} s): $*"
  start=$(date +%s)
  timeout --signal=INT --kill-after=15 "$cap" "$@"
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$cap" >> "$OUT_DIR/steps.tsv"
  echo "== step $name: exit $rc after $(( $(date +%s) - start )) s"
  [ "$rc" = 0 ] || FAILED=1
}

if [ $SMOKE = 1 ]; then
  echo "smoke: every step at seconds' scale on the CPU (tiny ConvNet, 2 steps, a tiny archive)"
  DEV=cpu; T_TESTS=300; T_EAGER=300; T_COMP=300; T_PACK=300; T_PLAN=120; T_CLAIM=420
  NET=(--backbones convnet --batches 8,16 --set model.width=8 --image-size 16 --steps 2 --warmup 1)
  PACK=(--jobs 2 --backbone convnet --batch 8 --set model.width=8 --image-size 16 --steps 2 --warmup 1)
  # compiling on this CPU takes minutes (issue 24: 80 s for a ConvNet step): opt in
  COMPILED=${SMOKE_COMPILE:-off}; JOBS=3; PLAN=(--smoke)
else
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  DEV=cuda; T_TESTS=90; T_EAGER=45; T_COMP=110; T_PACK=90; T_PLAN=15; T_CLAIM=185
  NET=(--backbones resnet18 --batches 32,128 --steps 15 --warmup 5 --gpu-busy 5)
  PACK=(--jobs 6 --backbone resnet18 --batch 32 --steps 30 --warmup 5)
  COMPILED=on; JOBS=6; PLAN=()
fi
"$PY" -c 'import torch, lightning, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "lightning", lightning.__version__, "cores", __import__("os").cpu_count())'

# The claim's archive is extracted meanwhile, during the tests (no timing is taken there), so
# that the claim's cap goes to training: reproduce skips the extraction when root/train exists.
ARCHIVE=${CLAIM_ARCHIVE:-.carry/data/cifar10-train.tar.gz}
[ -e "$ARCHIVE" ] || [ ! -e ../shared/data/cifar10-train.tar.gz ] || ARCHIVE=../shared/data/cifar10-train.tar.gz
if [ $SMOKE = 1 ]; then  # a tiny archive of the same layout (10 classes x 10 JPEGs)
  ARCHIVE="$WORK/smoke-cifar.tar.gz"
  "$PY" benchmarks/claim_plan.py --write-smoke-archive "$ARCHIVE"
fi
EXTRACT=
if [ -e "$ARCHIVE" ]; then
  mkdir -p "$WORK/cifar10.partial"
  (tar xzf "$ARCHIVE" -C "$WORK/cifar10.partial" && mv "$WORK/cifar10.partial" "$WORK/cifar10") &
  EXTRACT=$!
fi
# 1. GPU tests (skipped without CUDA)
step tests "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu
# 2. throughput, compile off then on; TriBYOL first (the target's row), separate passes (base)
TP=("$PY" benchmarks/throughput.py --methods tribyol,byol --precisions auto --device "$DEV"
    --variants base --dataset cifar10 --rounds 1 "${NET[@]}")
step eager "$T_EAGER" "${TP[@]}" --compile off --out "$OUT_DIR/throughput_eager.json"
step compiled "$T_COMP" "${TP[@]}" --compile "$COMPILED" --out "$OUT_DIR/throughput_compiled.json"
# 3. packing: the environment reproduce --jobs gives each cell
step packing "$T_PACK" "$PY" benchmarks/packing.py --method tribyol --device "$DEV" --compile off \
  --timeout $(( T_PACK - 5 )) "${PACK[@]}" --out "$OUT_DIR/packing.json"
# 4. the claim: plan from the measured speed, then the packed grid
[ -z "$EXTRACT" ] || wait "$EXTRACT" || echo "extracting $ARCHIVE failed: reproduce extracts it"
if [ -e "$ARCHIVE" ]; then
  step plan "$T_PLAN" "$PY" benchmarks/claim_plan.py "${PLAN[@]}" --jobs "$JOBS" --budget-s "$T_CLAIM" \
    --packing "$OUT_DIR/packing.json" --throughput "$OUT_DIR/throughput_eager.json" \
    --archive "$ARCHIVE" --root "$WORK/cifar10" --compile "${CLAIM_COMPILE:-off}" \
    --out "$WORK/claim/gpu_claim.yaml"
  step claim "$T_CLAIM" "$PY" -m tribyol.cli reproduce "$WORK/claim/gpu_claim.yaml" --jobs "$JOBS" \
    --out "$WORK/claim/out"
else
  echo "no CIFAR-10 archive at $ARCHIVE: run 'make carry' and carry .carry; the claim is skipped"
  printf 'claim\tskipped (no archive)\t0\t%s\n' "$T_CLAIM" >> "$OUT_DIR/steps.tsv"
  FAILED=1
fi
# 5. the summary, and the claim's folder without checkpoints or feature caches
"$PY" benchmarks/gpu_summary.py --out "$OUT_DIR" --claim "$WORK/claim/out" \
  --title "benchmarks/gpu.sh$( [ $SMOKE = 1 ] && echo ' --smoke (CPU rehearsal: no figure from it is a GPU figure)')" \
  >/dev/null || FAILED=1
[ -d "$WORK/claim" ] && tar czf "$OUT_DIR/claim.tar.gz" -C "$WORK" --exclude=checkpoints \
  --exclude=cache --exclude=tb --exclude='*.ckpt' --exclude='*.safetensors' claim
cat "$OUT_DIR/summary.md"
echo "== done: $(wc -l < "$OUT_DIR/steps.tsv") steps, failed: $FAILED; files in $OUT_DIR"
rm -rf "$WORK"
exit $FAILED
