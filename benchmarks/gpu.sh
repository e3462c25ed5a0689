#!/usr/bin/env bash
# One prepared GPU throughput check, about 4-5 minutes on one H200; no dataset is carried
# (synthetic uint8 images in CIFAR-10's 3x32x32 and STL-10's 3x96x96 shapes, held on the GPU).
# Reports images/s of BYOL and TriBYOL with ResNet-18/50 at b32/64/128 and the fraction of
# step time the GPU runs kernels (kernel time from torch.profiler over 5 extra steps per config,
# over the median step time measured without the profiler).
# Without a GPU it runs a seconds-long CPU smoke of the same script instead.
#   bash benchmarks/gpu.sh            (results: $OUT or benchmarks/out, gpu*.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT_DIR=${OUT:-benchmarks/out}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
. benchmarks/carried.sh  # omegaconf on a bare GPU machine (make carry)
B="$PY benchmarks/throughput.py --methods byol,tribyol --precisions auto"
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  # bf16 autocast (auto), plain layout vs channels_last + one concatenated pass.
  $B --device cuda --backbones resnet18,resnet50 --batches 32,64,128 --variants base,cl+concat \
     --dataset cifar10 --steps 15 --warmup 5 --rounds 1 --gpu-busy 5 \
     --out "$OUT_DIR/gpu_cifar.json" 2>&1 | grep -v -i -E 'warn|tip|litlogger|available|stopped'
  # STL-10-sized views (96 px): larger kernels, so less launch-bound.
  $B --device cuda --backbones resnet50 --batches 64 --variants base,cl+concat \
     --dataset stl10 --steps 10 --warmup 5 --rounds 1 --gpu-busy 5 \
     --out "$OUT_DIR/gpu_stl.json" 2>&1 | grep -v -i -E 'warn|tip|litlogger|available|stopped'
else
  echo "no CUDA device: CPU smoke of the same script (convnet, b32, 2 timed steps)"
  $B --device cpu --backbones convnet --batches 32 --variants base --dataset cifar10 \
     --steps 2 --warmup 1 --rounds 1 --out "$OUT_DIR/gpu_cpu_fallback.json"
fi
