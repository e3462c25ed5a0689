"""Peak CPU memory of one training step against the batch size, at 224 px (UC Merced's preset).

Each configuration runs in a fresh Python process: the networks are built, then one real
training step (a Lightning fit of ``PretrainModule`` with ``max_steps=1``: views from 256-px
uint8 tiles, forward, backward, optimizer step with its momentum buffers created, EMA) runs.
Reported per configuration:

* ``peak_mb``: the process's ``ru_maxrss`` at the end (the whole process: Python, torch, the
  networks, the tiles and the step);
* ``step_mb``: ``ru_maxrss`` at the end minus ``ru_maxrss`` just before the fit, after the model
  and the tiles were built (what the step adds: activations, gradients, optimizer state);
* ``sampled_step_mb``: the same from a 5 ms RSS sampler (peak during the fit minus RSS before).

Configurations run in order of batch size; one whose memory, extrapolated linearly from the two
smaller batches of the same (method, backbone), would pass ``--max-gb``, or whose time,
extrapolated the same way, would overrun the remaining ``--budget-s`` of CPU time, is skipped
and listed with the reason. Precision: ``auto`` (bf16 autocast on a CPU with AVX512-BF16 or
AMX, else fp32); the JSON says which.

    python benchmarks/memory.py --out benchmarks/results/cpu_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from record import write_result  # noqa: E402


def child(method: str, backbone: str, batch: int, precision: str) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(HERE))
    import throughput as tp

    from tribyol.config import to_dict
    from tribyol.data import TensorImages
    from tribyol.data.pretrain import data_info_for
    from tribyol.engine.loader import PretrainData
    from tribyol.engine.module import PretrainModule
    from tribyol.engine.trainer import resolve_precision

    warnings.filterwarnings("ignore")
    args = argparse.Namespace(device=torch.device("cpu"), dataset="ucmerced", image_size=None,
                              no_probe=False, set=None, gpu_busy=0, cudnn_benchmark=False)
    cfg = tp.make_config(args, method, backbone, batch, precision, "base")
    g = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 256, (batch, 3, 256, 256), dtype=torch.uint8, generator=g)
    data = TensorImages(tiles, torch.randint(0, 21, (batch,), generator=g))
    module = PretrainModule(to_dict(cfg), vars(data_info_for(cfg, data)))
    with tempfile.TemporaryDirectory() as work:
        trainer = tp.make_trainer(args, resolve_precision(cfg), 1, [], 1, Path(work))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.process_time()
        with tp.RSSSampler() as rss:
            trainer.fit(module, datamodule=PretrainData(cfg, data))
        cpu_s = time.process_time() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "backbone": backbone, "batch": batch,
            "precision": resolve_precision(cfg), "peak_mb": after, "step_mb": after - before,
            "sampled_step_mb": (rss.peak - rss.start) / 2**20, "step_cpu_s": cpu_s}


def extrapolate(points: list[tuple[int, float]], batch: int) -> float | None:
    """Linear in the batch through the two largest measured batches."""
    if len(points) < 2:
        return None
    (b1, y1), (b2, y2) = points[-2], points[-1]
    return y2 + (y2 - y1) / (b2 - b1) * (batch - b2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="tribyol,byol")
    p.add_argument("--backbones", default="resnet50,resnet18")
    p.add_argument("--batches", default="8,16,32,64,128")
    p.add_argument("--precision", default="auto")
    p.add_argument("--max-gb", type=float, default=16.0)
    p.add_argument("--budget-s", type=float, default=600.0, help="CPU seconds for all children")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", nargs=4, metavar=("METHOD", "BACKBONE", "BATCH", "PRECISION"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        m, bb, b, prec = args.child
        print("RESULT " + json.dumps(child(m, bb, int(b), prec)))
        return 0

    methods, backbones = args.methods.split(","), args.backbones.split(",")
    batches = sorted(int(b) for b in args.batches.split(","))
    rows: list[dict[str, Any]] = []
    measured: dict[tuple[str, str], list[dict[str, Any]]] = {}
    spent = 0.0
    for batch in batches:
        for backbone in backbones:
            for method in methods:
                done = measured.setdefault((method, backbone), [])
                mem = extrapolate([(r["batch"], r["peak_mb"]) for r in done], batch)
                cpu = extrapolate([(r["batch"], r["child_cpu_s"]) for r in done], batch)
                row: dict[str, Any] = {"method": method, "backbone": backbone, "batch": batch}
                if mem is not None and mem > args.max_gb * 1024:
                    rows.append({**row, "skipped": f"extrapolated peak {mem / 1024:.1f} GB > "
                                 f"{args.max_gb:g} GB", "extrapolated_peak_mb": mem})
                    continue
                if cpu is not None and spent + cpu > args.budget_s:
                    rows.append({**row, "skipped": f"extrapolated {cpu:.0f} CPU-s; "
                                 f"{args.budget_s - spent:.0f} of the budget left",
                                 "extrapolated_peak_mb": mem})
                    continue
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", method, backbone, str(batch),
                     args.precision], capture_output=True, text=True)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                child_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                spent += child_cpu
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    rows.append({**row, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                    continue
                result = {**json.loads(lines[-1][7:]), "child_cpu_s": child_cpu}
                done.append(result)
                rows.append(result)
                print(f"{method:8s} {backbone:9s} b{batch:<4d} peak {result['peak_mb']:7.0f} MB, "
                      f"step adds {result['step_mb']:7.0f} MB ({result['precision']}, "
                      f"{child_cpu:.0f} CPU-s)", file=sys.stderr)
    write_result({"cpu_s_spent": spent, "rows": rows}, args.out, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
