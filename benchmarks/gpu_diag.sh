#!/usr/bin/env bash
# GPU diagnosis (about 2 minutes): where the kernel time of one BYOL ResNet-18 step goes, in
# bf16 and fp32, NCHW and channels_last, with cuDNN's heuristics and with its autotuner.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT_DIR=${OUT:-benchmarks/out}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
. benchmarks/carried.sh  # omegaconf on a bare GPU machine (make carry)
D="$PY benchmarks/throughput.py --device cuda --methods byol --backbones resnet18 --batches 64
   --variants base,cl --steps 10 --warmup 5 --rounds 1 --gpu-busy 3 --show-kernels"
$D --precisions bf16,32 --out "$OUT_DIR/diag_heuristic.json" 2>&1 | grep -v -i -E 'warn|tip|litlogger|available'
$D --precisions bf16 --cudnn-benchmark --out "$OUT_DIR/diag_autotune.json" 2>&1 | grep -v -i -E 'warn|tip|litlogger|available'
# The encoder alone, fwd+bwd on 2 x 64 images (what one BYOL step's online passes compute).
$PY - <<'PY'
import time, torch
from tribyol.nets import build_backbone
x = torch.randn(128, 3, 32, 32, device="cuda")
for fmt in (torch.contiguous_format, torch.channels_last):
    net = build_backbone("resnet18", 3, 32).cuda().to(memory_format=fmt)
    xx = x.contiguous(memory_format=fmt)
    for dt in (torch.bfloat16, torch.float32):
        def step():
            with torch.autocast("cuda", dtype=dt, enabled=dt != torch.float32):
                y = net(xx).float().sum()
            y.backward()
        for _ in range(5):
            step()
        torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(20):
            step()
        torch.cuda.synchronize()
        print(f"encoder only {fmt} {dt}: {1e3 * (time.perf_counter() - t) / 20:.2f} ms fwd+bwd b128")
PY
