"""``benchmarks/decode.py --mode formats | uint8-ab`` (issue 22): the N-band data paths, and the
uint8 path against another source tree. Usage and meaning: decode.py's docstring."""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import throughput as tp
import torch
from record import write_result

HERE = Path(__file__).resolve().parent
EUROSAT = HERE.parents[1] / "shared" / "data" / "eurosat_ms_sample.tar.gz"


def write_tiles(root: Path, files: int) -> tuple[dict[str, tuple[Path, int, list[str]]], bool]:
    """``kind -> (folder, view size, extra --set)``: 13-band 64 px and 1-band 256 px uint16 tiles,
    as TIFF and .npy, in two class folders each."""
    import tarfile

    import tifffile

    rng = np.random.default_rng(0)
    kinds: dict[str, tuple[Path, int, list[str]]] = {}
    real: list[bytes] = []
    if EUROSAT.is_file():  # the real GeoTIFF files, byte for byte
        with tarfile.open(EUROSAT) as t:
            for m in [m for m in t.getmembers() if m.name.endswith(".tif")][:files]:
                real.append(t.extractfile(m).read())
    for bands, size in ((13, 64), (1, 256)):
        for ext in ("tif", "npy"):
            folder = root / f"b{bands}_{size}_{ext}"
            for i in range(files):
                path = folder / f"c{i % 2}" / f"{i:04d}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if bands == 13 and real:
                    hwc = tifffile.imread(io.BytesIO(real[i % len(real)]))
                else:
                    hwc = rng.integers(0, 4096, (size, size, bands), dtype=np.uint16)
                if ext == "tif" and bands == 13 and real:
                    path.write_bytes(real[i % len(real)])
                elif ext == "tif":  # 1 band: a plain 2-D page
                    tifffile.imwrite(path, hwc[..., 0], photometric="minisblack")
                else:
                    np.save(path, np.ascontiguousarray(hwc.transpose(2, 0, 1)))  # [C, H, W]
            # fixed statistics (DN units): their values do not change the step's cost
            sets = [f"data.channels={bands}", f"data.image_size={size}",
                    "augment.preset=" + ("multispectral" if bands > 1 else "grayscale16"),
                    f"data.mean=[{','.join(['1000'] * bands)}]",
                    f"data.std=[{','.join(['500'] * bands)}]"]
            kinds[folder.name] = (folder, size, sets)
    return kinds, bool(real)


def time_kind(folder: Path, size: int, sets: list[str], args: argparse.Namespace,
              work: Path) -> dict[str, Any]:
    from tribyol.data import FolderImages, TensorImages
    from tribyol.data.formats import read_image

    paths = sorted(folder.rglob("*.*"))
    decode, feed = [], []
    lazy = FolderImages(folder, image_size=size, channels=int(sets[0].split("=")[1]))
    g = torch.Generator().manual_seed(0)
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        arrays = [read_image(p) for p in paths]
        decode.append(time.perf_counter() - t0)
        idx = torch.randint(0, len(lazy), (args.batch,), generator=g).tolist()
        t0 = time.perf_counter()
        batch = lazy[idx][0]
        feed.append(time.perf_counter() - t0)
    row: dict[str, Any] = {
        "files": len(paths), "shape": list(arrays[0].shape), "dtype": str(arrays[0].dtype),
        "batch_dtype": str(batch.dtype), "decode_images_per_s": len(paths) / statistics.median(decode),
        "feed_images_per_s": args.batch / statistics.median(feed)}
    args.set = sets
    args.dataset, args.image_size, args.no_probe = "folder", None, False
    try:
        cfg = tp.make_config(args, "tribyol", "convnet", args.batch, args.precision, "base")
        case = tp.Case("tribyol", "convnet", args.batch, args.precision, "base", cfg)
        images = torch.from_numpy(np.stack(arrays)).reshape(len(arrays), -1, *arrays[0].shape[-2:])
        cached = TensorImages(images, lazy.labels)
        for _ in range(args.rounds):
            tp.fit_round(case, cached, args, work)
        step = statistics.median(case.times)
        row.update(step_s=step, step_images_per_s=args.batch / step,
                   feed_share_of_step=(args.batch / row["feed_images_per_s"]) / step)
    except Exception as err:  # the data numbers stand without a step
        row["step_error"] = f"{type(err).__name__}: {err}"
    return row


def formats(args: argparse.Namespace, argv: list[str] | None) -> int:
    args.device, args.gpu_busy, args.show_kernels = torch.device("cpu"), 0, False
    with tempfile.TemporaryDirectory() as tmp:
        kinds, real = write_tiles(Path(tmp), args.files)
        rows = {}
        for name, (folder, size, sets) in kinds.items():
            rows[name] = time_kind(folder, size, sets, args, Path(tmp))
            print(name, json.dumps({k: v for k, v in rows[name].items() if k != "shape"}),
                  file=sys.stderr)
    write_result({"machine": tp.machine_info(args.device), "batch": args.batch,
                  "eurosat_real_tiles": real, "kinds": rows}, args.out, argv)
    return 0


def worker(batch: int, precision: str, steps: int) -> None:
    """One tree's side of ``uint8-ab``: a fit of ``steps`` timed steps per line on stdin, its
    median step times as one ``AB {json}`` line (the module is loaded once, so rounds are
    short and the two trees see the same load)."""
    args = tp.parse_args(["--device", "cpu", "--steps", str(steps), "--warmup", "2"])
    args.dataset, args.image_size, args.no_probe, args.set = "cifar10", None, False, None
    args.gpu_busy, args.show_kernels = 0, False
    cfg = tp.make_config(args, "tribyol", "convnet", batch, precision, "base")
    case = tp.Case("tribyol", "convnet", batch, precision, "base", cfg)
    images = tp.synthetic_images(cfg, batch * (steps + 3))
    with tempfile.TemporaryDirectory() as work:
        for _ in sys.stdin:
            n = len(case.times)
            tp.fit_round(case, images, args, Path(work))
            print("AB " + json.dumps({"ms": 1e3 * statistics.median(case.times[n:]),
                                      "cpu_ms": 1e3 * statistics.median(case.cpu_times[n:])}),
                  flush=True)


def start_worker(tree: Path, args: argparse.Namespace) -> subprocess.Popen:
    code = (f"import sys; sys.path.append({str(HERE)!r}); import decode_formats; "
            f"decode_formats.worker({args.batch}, {args.precision!r}, {args.steps})")
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}:{tree / 'benchmarks'}"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tree, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def ask(proc: subprocess.Popen) -> dict[str, float]:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    for line in proc.stdout:
        if line.startswith("AB "):
            return json.loads(line[3:])
    raise RuntimeError("a uint8-ab worker stopped")


def uint8_ab(args: argparse.Namespace, argv: list[str] | None) -> int:
    """ABBA rounds of short fits at ``--base`` (A) and at this tree (B), each tree one process."""
    trees = {"base": args.base.resolve(), "tree": HERE.parent}
    procs = {k: start_worker(t, args) for k, t in trees.items()}
    got: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    try:
        for r in range(args.rounds + 1):  # round 0 warms both up and is not kept
            for name in ("base", "tree") if r % 2 == 0 else ("tree", "base"):
                t = ask(procs[name])
                if r:
                    got[name].append(t)
                print(f"round {r} {name}: {t}", file=sys.stderr)
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("ms", "cpu_ms")}
           for k, v in got.items()}
    paired = [b["ms"] / a["ms"] for a, b in zip(got["base"], got["tree"], strict=True)]
    write_result({"machine": tp.machine_info(torch.device("cpu")), "base_tree": str(args.base),
                  "config": {"method": "tribyol", "backbone": "convnet", "batch": args.batch,
                             "dataset": "cifar10 (synthetic uint8 32x32x3)",
                             "precision": args.precision, "timed_steps_per_round": args.steps},
                  "rounds": got, "median": med,
                  "ratio_tree_over_base_ms": med["tree"]["ms"] / med["base"]["ms"],
                  "ratio_tree_over_base_cpu_ms": med["tree"]["cpu_ms"] / med["base"]["cpu_ms"],
                  "paired_round_ratios_ms": paired,
                  "median_paired_ratio_ms": statistics.median(paired)}, args.out, argv)
    return 0


def main(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.mode == "uint8-ab":
        if args.base is None or not (args.base / "src" / "tribyol").is_dir():
            print("error: --mode uint8-ab needs --base TREE, a source tree with src/tribyol "
                  "(e.g. git worktree add /tmp/base HEAD~)", file=sys.stderr)
            return 2
        return uint8_ab(args, argv)
    return formats(args, argv)
