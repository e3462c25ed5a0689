"""Peak CPU memory of one encoder training step with and without ``model.activation_checkpointing``.

Each configuration runs in a fresh Python process: a ResNet-18 (small stem, as at 64 px) is
built with its SGD optimizer and ``--views`` batches, then one training step runs (every view
forward, as a multi-view method's online network does before its backward, a loss, backward,
optimizer step; NHWC as ``model.channels_last`` runs it). Reported per
configuration: ``step_mb`` = ``ru_maxrss`` after the step minus ``ru_maxrss`` just before it
(what the step adds: activations, gradients, momentum buffers), ``peak_mb`` = the process's
``ru_maxrss``, and the step's wall and CPU seconds. One thread, to be gentle on a shared machine.

    python benchmarks/checkpointing_memory.py --views 1 --out benchmarks/out/checkpointing_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def child(backbone: str, batch: int, size: int, views: int, checkpointing: bool) -> dict[str, Any]:
    import torch

    from tribyol.nets import build_backbone

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_backbone(backbone, in_channels=3, image_size=size, small_stem=True,
                         activation_checkpointing=checkpointing)
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9)
    xs = [torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
          for _ in range(views)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    loss = sum(net(x).square().mean() for x in xs)
    loss.backward()
    opt.step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"backbone": backbone, "batch": batch, "image_size": size, "views": views,
            "activation_checkpointing": checkpointing, "step_mb": round((peak - before) / 1024, 1),
            "peak_mb": round(peak / 1024, 1), "step_wall_s": round(wall, 2),
            "step_cpu_s": round(cpu, 2), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--views", type=int, default=1, help="views through the encoder per step")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", choices=("off", "on"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.backbone, a.batch, a.image_size, a.views, a.child == "on")))
        return
    rows = []
    for mode in ("off", "on"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--backbone", a.backbone,
             "--batch", str(a.batch), "--image-size", str(a.image_size),
             "--views", str(a.views)],
            check=True, capture_output=True, text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
