"""Scientific imagery on real data (issue 22): full bands / bit depth against the 8-bit path.

Two real sets from ../shared/data (its README): 369 EuroSAT-MS tiles (13-band uint16 GeoTIFF,
64 px, 10 classes) and 100 CT slices (12/16-bit DICOM, 512 px, contrast / no contrast). Each is
extracted to --cache and split once by tribyol's own seeded, stratified carve
(tribyol.data.folder_split, --test-fraction, split seed 0: the same test images for every arm
and seed). Pre-training reads only the train side (asserted); every score is on the test side.

Arms, each pre-trained (TriBYOL, ConvNet, bf16 auto) for every seed, then linear + kNN, export:
- ``full``: the files as they are. EuroSAT: 13 bands, data.scale 10000 (reflectance); CT:
  float32 Hounsfield units clipped to [-1024, 3071] (data.value_range).
- ``8bit``: today's path. EuroSAT: bands 4-3-2 (B04 B03 B02) as 8-bit RGB PNGs, each band
  ``round(clip(DN / 3000, 0, 1) * 255)`` (reflectance 0-0.3, the usual true-colour stretch);
  CT: the same HU window [-1024, 3071] squashed to 256 levels (16 HU a level) as 8-bit PNGs.
- each arm's encoder with random weights (``--random-init``, seed = the seed).
Both arms use the same augmentation preset (multispectral / grayscale16) and per-band
statistics from the train side (data.stats=data), so what differs is the pixels alone.
Paired differences over the seeds (same seeds, same carve): tribyol.report.stats.

    python experiments/scientific.py --datasets eurosat-ms --max-steps 16 --out results/scientific/eurosat-ms
    python experiments/scientific.py --datasets ct --max-steps 12 --out results/scientific/ct
                                                        # RESULTS.md C (~13 CPU-min together)
    python experiments/scientific.py --quick            # smoke run: 1 seed, 4 steps, to
                                                        # /tmp/tribyol-scientific/quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SPLIT_SEED = 0
CT_WINDOW = (-1024.0, 3071.0)  # the 12-bit CT range (stored 0..4095 with intercept -1024)
RGB_BANDS = (3, 2, 1)  # B04 B03 B02 in EuroSAT's order B01..B08, B8A, B09..B12
RGB_PEAK = 3000.0  # DN (reflectance x 10000) mapped to 255
KNN_K = 20  # the default 200 is most of a 70-257-image train side: nearly a majority vote


@dataclass
class Dataset:
    key: str
    tarball: str
    folder: str  # the class folders' parent inside the tarball
    image_size: int
    epochs: int
    batch: int
    full_sets: list[str]  # pre-training --set values of the full arm
    eight_sets: list[str]  # ... of the 8-bit arm
    sets: list[str] = field(default_factory=list)  # both arms


DATASETS = {
    "eurosat-ms": Dataset(
        "eurosat-ms", "eurosat_ms_sample.tar.gz", "eurosat_ms", 64, 5, 32,
        ["data.channels=13", "data.scale=10000"], ["data.channels=3"],
        ["augment.preset=multispectral"]),
    "ct": Dataset(
        "ct", "ct_contrast.tar.gz", "ct_contrast", 96, 8, 16,
        ["data.channels=1", f"data.value_range=[{CT_WINDOW[0]},{CT_WINDOW[1]}]"],
        ["data.channels=1"], ["augment.preset=grayscale16"]),
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def extract(ds: Dataset, cache: Path) -> Path:
    tar = SHARED / ds.tarball
    raw = cache / "raw"
    if not (raw / ds.folder).is_dir():
        if not tar.is_file():
            fail(f"{tar} is missing; this experiment needs the shared real data "
                 "(../shared/data, see its README)")
        raw.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as t:
            t.extractall(raw, filter="data")
    return raw / ds.folder


def carve(src: Path, dest: Path, fraction: float) -> dict:
    from tribyol.data.folder_split import MANIFEST_NAME, split_folder

    if (dest / MANIFEST_NAME).is_file():
        m = json.loads((dest / MANIFEST_NAME).read_text())
        assert m["seed"] == SPLIT_SEED and m["test_fraction"] == fraction, dest
    else:
        m = split_folder(src, dest, fraction, SPLIT_SEED)
    assert not set(m["train"]) & set(m["test"]), "a file on both sides of the carve"
    return m


def rgb_png(tif: Path) -> np.ndarray:
    import tifffile

    dn = tifffile.imread(tif)[..., list(RGB_BANDS)].astype(np.float64)
    return np.round(np.clip(dn / RGB_PEAK, 0, 1) * 255).astype(np.uint8)


def ct_png(dcm: Path) -> np.ndarray:
    from tribyol.data.formats import read_image

    hu = read_image(dcm)[0].astype(np.float64)  # float32 HU, slope/intercept applied
    lo, hi = CT_WINDOW
    return np.round((np.clip(hu, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)


def eight_bit_folder(ds: Dataset, full: Path, m: dict, dest: Path) -> None:
    """The 8-bit arm's PNGs, on the same sides of the same carve as the full arm's files."""
    from PIL import Image

    convert = rgb_png if ds.key == "eurosat-ms" else ct_png
    for side in ("train", "test"):
        for name in m[side]:
            out = (dest / side / name).with_suffix(".png")
            if not out.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp.png")
                Image.fromarray(convert(full / side / name)).save(tmp)
                os.replace(tmp, out)


def cli(*argv: str) -> None:
    from tribyol.cli import main

    code = main([str(a) for a in argv])
    if code:
        fail(f"`tribyol {' '.join(map(str, argv))}` exited {code}")


def check_unseen(run: Path, m: dict) -> None:
    """Pre-training read ROOT/train only, and none of its files is a test file."""
    from tribyol.data.readers import read_folder
    from tribyol.resolve import load_config

    cfg = load_config(run / "config.yaml")
    seen = read_folder(cfg.data.root, "train", image_size=8, channels=cfg.data.channels)
    names = {Path(p).relative_to(Path(cfg.data.root) / "train").with_suffix("").as_posix()
             for p, _ in seen.samples}
    test = {Path(n).with_suffix("").as_posix() for n in m["test"]}
    assert names and not names & test, f"{run}: pre-training saw test images"


def run_arm(args: argparse.Namespace, ds: Dataset, arm: str, root: Path, m: dict) -> list[str]:
    sets = ds.sets + (ds.full_sets if arm == "full" else ds.eight_sets) + [
        f"data.image_size={ds.image_size}", "data.stats=data", "optim.lr=0.05",
        "train.progress_bar=false"]
    steps = args.max_steps if args.max_steps > 0 else None
    epochs, batch = args.epochs or ds.epochs, args.batch or ds.batch
    label = f"s{steps}" if steps else f"e{epochs}"
    names = []
    for seed in args.seeds:
        name = f"{ds.key}-{arm}_tribyol_convnet_b{batch}_{label}_seed{seed}"
        run = args.out / "runs" / name
        if not (run / "checkpoints" / "last.ckpt").is_file():
            flags = ["pretrain", "--dataset", "folder", "--data-root", root, "--backbone",
                     "convnet", "--batch-size", batch, "--epochs", epochs, "--seed",
                     seed, "--runs-root", args.out / "runs", "--name", name, "--overwrite"]
            flags += ["--max-steps", steps] if steps else []
            for s in sets:
                flags += ["--set", s]
            cli(*flags)
        check_unseen(run, m)
        store = ["--dataset", "folder", "--data-root", root, "--store",
                 args.out / "results.jsonl", "--cache-dir", args.out / "cache", "--seed", seed,
                 "--force-small-test"]
        for protocol, extra in (("linear", []), ("knn", ["--k", KNN_K])):
            cli("eval", protocol, run, *store, *extra)
            cli("eval", protocol, run, *store, *extra, "--random-init")
        export = run / "encoder.safetensors"
        if not export.is_file():
            cli("export", run, "--out", export)
        from tribyol.checkpoints import load_encoder

        _, meta = load_encoder(export)  # the export reads back
        shown = {k: v for k, v in meta.items() if k in ("channels", "bands", "dtype", "mean")}
        print(f"exported {export}: {shown}")
        names.append(name)
    return names


def records(store: Path) -> dict[tuple[str, str, bool, int], float]:
    """(run name, protocol, random init, seed) -> top-1 %, the latest record of each."""
    out = {}
    for line in store.read_text().splitlines():
        r = json.loads(line)
        random = r["method"] == "random-init"
        out[(Path(r["source"]).name, r["protocol"], random, int(r["seed"]))] = r["value"]
    return out


def run_label(run: Path) -> str:
    r = json.loads((run / "run.json").read_text())
    return (f"TriBYOL ConvNet b{r['batch_size']}, {r['steps_done']} steps "
            f"({r['epochs_done']:g} epochs)")


def summarise(args: argparse.Namespace, runs: dict[str, dict[str, list[str]]]) -> str:
    from tribyol.report.stats import paired_difference

    rec = records(args.out / "results.jsonl")
    lines = []
    for key, arms in runs.items():
        lines += [f"\n### {key} (top-1 %, seeds {' / '.join(map(str, args.seeds))})\n",
                  "| arm | linear | kNN |", "|---|---|---|"]
        vals: dict[tuple[str, bool, str], list[float]] = {}
        for arm, names in arms.items():
            for random in (False, True):
                cells = []
                for protocol in ("linear", "knn"):
                    v = [rec[(n, protocol, random, s)] for n, s in zip(names, args.seeds, strict=True)]
                    vals[(arm, random, protocol)] = v
                    spread = f" (mean {np.mean(v):.1f}, sd {np.std(v, ddof=1):.1f})" if len(v) > 1 else ""
                    cells.append(" / ".join(f"{x:.1f}" for x in v) + spread)
                what = "random init" if random else run_label(args.out / "runs" / names[0])
                lines.append(f"| {arm}: {what} | {cells[0]} | {cells[1]} |")
        lines += ["", "| paired difference (95 % interval) | linear | kNN |", "|---|---|---|"]
        pairs = [("full - 8bit", ("full", False), ("8bit", False)),
                 ("full - its random init", ("full", False), ("full", True)),
                 ("8bit - its random init", ("8bit", False), ("8bit", True)),
                 ("random init: full - 8bit", ("full", True), ("8bit", True))]
        for text, a, b in pairs:
            cells = [paired_difference(vals[(*a, p)], vals[(*b, p)]).text() for p in ("linear", "knn")]
            lines.append(f"| {text} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: seed 0, 4 steps")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--arms", nargs="+", default=["full", "8bit"], choices=["full", "8bit"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: 5 EuroSAT, 8 CT")
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--batch", type=int, default=None, help="default: 32 EuroSAT, 16 CT")
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--out", type=Path, default=REPO / "results" / "scientific")
    p.add_argument("--cache", type=Path, default=Path("/tmp/tribyol-scientific"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.max_steps = args.seeds[:1], 4
        args.out = args.cache / "quick"
    for key in args.datasets:  # before any work: one line where the data is missing
        ds = DATASETS[key]
        if not (SHARED / ds.tarball).is_file() and not (args.cache / "raw" / ds.folder).is_dir():
            fail(f"{SHARED / ds.tarball} is missing; this experiment needs the shared "
                 "real data (../shared/data, see its README)")
    t0, c0 = time.time(), os.times()
    runs: dict[str, dict[str, list[str]]] = {}
    for key in args.datasets:
        ds = DATASETS[key]
        src = extract(ds, args.cache)
        full = args.cache / key / "full"
        m = carve(src, full, args.test_fraction)
        print(f"{key}: {m['num_train']} train / {m['num_test']} test (split seed {SPLIT_SEED}, "
              f"sha256 {m['sha256'][:12]})")
        eight = args.cache / key / "8bit"
        eight_bit_folder(ds, full, m, eight)
        roots = {"full": full, "8bit": eight}
        runs[key] = {arm: run_arm(args, ds, arm, roots[arm], m) for arm in args.arms}
    args.out.mkdir(parents=True, exist_ok=True)
    if set(args.arms) == {"full", "8bit"}:
        table = summarise(args, runs)
        (args.out / "tables.md").write_text(table)
        print(table)
    c1 = os.times()
    cpu = c1.user + c1.system + c1.children_user + c1.children_system - sum(c0[:4])
    print(f"done in {time.time() - t0:.0f} s wall, {cpu:.0f} CPU-s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
