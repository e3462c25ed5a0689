"""Does decoding keep up? Images/s of the data path alone against a whole training step.

UC Merced's tiles are 256 px JPEGs; views are made at 224 px. Three ways to get a batch of
uint8 256x256 tiles, each timed alone on batches of the run's size drawn at random from the
ucmerced train side:

* ``pil-loader``: what ``--dataset folder`` does, ``FolderImages`` decoding each batch's files
  with PIL in the loader (num_workers 0: in the training process, between steps);
* ``tv-loader``: the same, with ``torchvision.io.decode_jpeg`` (``decode_square``);
* ``cached``: what ``--dataset ucmerced`` does, one fancy index into the uint8 tiles decoded
  once at start-up (``TensorImages``); its one-time decode is timed too, with both decoders.

and the training step, a real Lightning fit of ``PretrainModule`` (views, forward, backward,
optimizer, EMA, logging) on the cached tiles. Rounds alternate data paths and step fits so a
load change on a shared CPU hits all of them; medians over rounds. Pixel equality of the two
decoders is checked on every tile decoded.

    python benchmarks/decode.py --data-root /tmp/data --method tribyol --backbone resnet18 \\
        --batch 16 --rounds 3 --out benchmarks/results/cpu_decode.json

``--mode formats`` (issue 22): the N-band paths, in benchmarks/decode_formats.py: images/s to
decode (``formats.read_image``) and to feed a step (``FolderImages`` batches: decode, resize
and crop in the file's dtype), against a ConvNet TriBYOL step on the same tiles, for 13-band
uint16 64-px tiles (the real EuroSAT-MS GeoTIFFs where ../shared/data has them, and the same
pixels as ``.npy``) and 1-band uint16 256-px tiles (TIFF and ``.npy``, written here).
``--mode uint8-ab --base TREE``: CIFAR-shaped uint8 steps of ``throughput.py`` at another
source tree (e.g. a ``git worktree`` of the commit before) and at this one, alternated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402
from record import write_result  # noqa: E402

from tribyol.data import FolderImages, load_split  # noqa: E402
from tribyol.data import ucmerced as ucm  # noqa: E402
from tribyol.data.images import decode_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="/tmp/data")
    p.add_argument("--method", default="tribyol")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--precision", default="auto", choices=sorted(tp.PRECISIONS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", type=int, default=6, help="batches per data path per round")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2, help="timed training steps per round")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--mode", default="ucmerced", choices=["ucmerced", "formats", "uint8-ab"])
    p.add_argument("--base", type=Path, default=None, help="uint8-ab: the other source tree")
    p.add_argument("--files", type=int, default=64, help="formats: tiles written per kind")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.mode != "ucmerced":
        import decode_formats

        return decode_formats.main(args, argv)

    folder, names, paths, labels = ucm.scan(args.data_root)
    train_idx, _, _ = ucm.split_indices(names, paths, labels)
    train_paths = [paths[i] for i in train_idx]
    lazy = FolderImages(folder, image_size=256)  # every file, as --dataset folder lists them
    position = {p: i for i, (p, _) in enumerate(lazy.samples)}
    lazy_train = lazy.subset([position[p] for p in train_paths])

    # One-time decode of the whole train side, both decoders alternated.
    once: dict[str, list[float]] = {"torchvision": [], "pil": []}
    tiles = None
    for _ in range(2):
        for decoder in once:
            t0 = time.perf_counter()
            out = decode_all(train_paths, ucm.LOAD_SIZE, decoder)
            once[decoder].append(time.perf_counter() - t0)
            if tiles is None:
                tiles = out
            elif not torch.equal(tiles, out):
                raise SystemExit(f"decoders disagree on the train tiles ({decoder})")
    cached = load_split("ucmerced", args.data_root, "train")
    assert torch.equal(cached.images, tiles)

    args.device = torch.device("cpu")
    args.dataset, args.image_size, args.no_probe, args.set = "ucmerced", None, False, None
    args.gpu_busy, args.show_kernels = 0, False
    cfg = tp.make_config(args, args.method, args.backbone, args.batch, args.precision, "base")
    case = tp.Case(args.method, args.backbone, args.batch, args.precision, "base", cfg)

    def tv_batch(idx: list[int]) -> torch.Tensor:
        return decode_all([train_paths[i] for i in idx], ucm.LOAD_SIZE, "torchvision")

    paths_fn = {
        "pil-loader": lambda idx: lazy_train[idx][0],
        "tv-loader": tv_batch,
        "cached": lambda idx: cached[idx][0],
    }
    per_batch: dict[str, list[float]] = {k: [] for k in paths_fn}
    g = torch.Generator().manual_seed(0)
    mismatches = 0
    with tempfile.TemporaryDirectory() as work:
        for r in range(args.rounds):
            for _ in range(args.batches):
                idx = torch.randint(0, len(train_paths), (args.batch,), generator=g).tolist()
                got = {}
                for name, fn in paths_fn.items():
                    t0 = time.perf_counter()
                    got[name] = fn(idx)
                    per_batch[name].append(time.perf_counter() - t0)
                mismatches += sum(not torch.equal(got["cached"], v) for v in got.values())
            tp.fit_round(case, cached, args, Path(work))
            print(f"round {r + 1}/{args.rounds}: step {statistics.median(case.times):.2f} s, "
                  + ", ".join(f"{k} {statistics.median(v) * 1e3:.1f} ms"
                              for k, v in per_batch.items()), file=sys.stderr)
    step = statistics.median(case.times)
    rows = {}
    for name, times in per_batch.items():
        t = statistics.median(times)
        rows[name] = {"images_per_s": args.batch / t, "ms_per_batch": 1e3 * t,
                      "share_of_step": t / (t + step), "step_over_data": step / t}
    n = len(train_paths)
    result = {
        "machine": tp.machine_info(args.device),
        "precision": tp.resolve_precision(cfg),
        "config": {"method": args.method, "backbone": args.backbone, "batch": args.batch,
                   "view_size": ucm.VIEW_SIZE, "tile_size": ucm.LOAD_SIZE},
        "train_tiles": n,
        "cache_mb": n * 3 * ucm.LOAD_SIZE**2 / 1e6,
        "all_tiles_cache_mb": len(paths) * 3 * ucm.LOAD_SIZE**2 / 1e6,
        "one_time_decode_s": {k: statistics.median(v) for k, v in once.items()},
        "one_time_decode_images_per_s": {k: n / statistics.median(v) for k, v in once.items()},
        "step_s": step,
        "step_images_per_s": args.batch / step,
        "step_times_s": case.times,
        "paths": rows,
        "pixel_mismatches": mismatches,
    }
    write_result(result, args.out, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
