"""Run the CLI on a list of ordinary mistakes and count the ones that end in a traceback.

    python experiments/bad_input_sweep.py            # prints one line per case and a summary

Each case must exit 2 with exactly one ``error:`` line (argparse's ``tribyol ...: error:``
counts) and no "Traceback"; some cases also check that nothing was lost (``CHECKS``). Runs in a
temporary folder; needs no data beyond sklearn's digits.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

TINY = ["--dataset", "digits", "--limit", "64", "--batch-size", "16", "--epochs", "1",
        "--precision", "32", "--accelerator", "cpu", "--set", "model.width=8",
        "--set", "train.progress_bar=false"]


def tribyol(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tribyol.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def edited_export(src: Path, dst: Path, **metadata: str) -> None:
    """A copy of export ``src`` whose metadata has ``metadata`` written over it (the tensors,
    and so their checksum, unchanged): what a hand-edited or damaged header looks like."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as f:
        meta = {**f.metadata(), **metadata}
    save_file(load_file(str(src)), str(dst), metadata=meta)


def zeroed_export(src: Path, dst: Path) -> None:
    """A copy of export ``src`` with up to 4 KB of zeros in the middle of its tensor data."""
    data = bytearray(src.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # safetensors: header length, header, data
    size = min(4096, (len(data) - start) // 4)
    middle = start + (len(data) - start) // 2
    data[middle:middle + size] = bytes(size)
    dst.write_bytes(bytes(data))


def folder_with_extra_test_class(root: Path) -> None:
    """train a/b, test a/b/d: d is a class the probe was never trained on."""
    from PIL import Image

    for split, classes in (("train", "ab"), ("test", "abd")):
        for i, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for j in range(4):
                Image.new("L", (16, 16), 40 * i + j).save(root / split / name / f"{j}.png")


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        assert tribyol("pretrain", *TINY, "--max-steps", "2", "--runs-root", "runs", "--name", "ok",
                       cwd=d).returncode == 0
        assert tribyol("export", "runs/ok", "--out", "enc.safetensors", cwd=d).returncode == 0
        (d / "bad.yaml").write_text("train:\n  batch_size: [1\n")
        (d / "list.yaml").write_text("- 1\n- 2\n")
        (d / "garbage.pth").write_bytes(b"not torch")
        (d / "trunc.safetensors").write_bytes((d / "enc.safetensors").read_bytes()[:300])
        (d / "victim").mkdir()
        (d / "victim" / "README.md").write_text("mine")
        (d / "a_dir").mkdir()
        broken = d / "broken" / "checkpoints"
        broken.mkdir(parents=True)
        (broken / "last.ckpt").write_bytes(b"PK\x03\x04 nope")
        (d / "empty_dir").mkdir()
        enc = d / "enc.safetensors"
        edited_export(enc, d / "size-5.safetensors", image_size="-5")
        edited_export(enc, d / "mean_nan.safetensors", mean="nan")
        edited_export(enc, d / "std0.safetensors", std="0")
        zeroed_export(enc, d / "zeroed.safetensors")
        (d / "escape.yaml").write_text("name: ../../escape\nbase: {data: {dataset: digits}}\n")
        (d / "maybe.yaml").write_text("random_init: maybe\nbase: {data: {dataset: digits}}\n")
        lightning = d / "runs" / "lightning" / "checkpoints"  # Lightning/Hydra's layout, no run.json
        lightning.mkdir(parents=True)
        (lightning.parent / "config.yaml").write_text("model: {lr: 0.1}\n")
        (lightning / "epoch=99-step=100000.ckpt").write_bytes(b"someone's weights")
        for name in ("nested", "locked", "good"):  # copies of a real run
            shutil.copytree(d / "runs" / "ok", d / "runs" / name)
        (d / "runs" / "nested" / "checkpoints" / "best_by_hand.ckpt").write_bytes(b"mine")
        # Held by a live process of this host: this sweep (the lock's own format, rundir.RunLock).
        (d / "runs" / "locked" / ".tribyol.lock").write_text(json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "since": "2025-01-01T00:00:00",
             "token": "sweep"}) + "\n")
        folder_with_extra_test_class(d / "imgs")
        kept = {name: files_of(d / "runs" / name)
                for name in ("lightning", "nested", "good", "locked")}
        kept["victim"] = files_of(d / "victim")
        cases = {
            "yaml syntax": ["pretrain", "--config", "bad.yaml"],
            "yaml not a mapping": ["pretrain", "--config", "list.yaml"],
            "missing config": ["pretrain", "--config", "nope.yaml"],
            "override bad yaml": ["pretrain", "--set", "optim.lr=[1"],
            "override no =": ["pretrain", "--set", "optim.lr"],
            "unknown key": ["pretrain", "--set", "train.batchsize=8"],
            "seed -1": ["pretrain", "--seed", "-1"],
            "seed 2**32": ["pretrain", "--seed", str(2**32)],
            "lr inf": ["pretrain", "--set", "optim.lr=inf"],
            "lr nan": ["pretrain", "--set", "optim.lr=nan"],
            "name .": ["pretrain", *TINY, "--name", ".", "--overwrite"],
            "name ../x": ["pretrain", *TINY, "--name", "../x"],
            "overwrite a user folder": ["pretrain", *TINY, "--runs-root", ".", "--name", "victim",
                                        "--overwrite"],
            "accelerator gpu": ["pretrain", *TINY, "--accelerator", "gpu"],
            "strategy bogus": ["pretrain", *TINY, "--strategy", "bogus"],
            "devices 0": ["pretrain", *TINY, "--devices", "0"],
            "unknown method": ["pretrain", "--method", "tribyoll"],
            "unknown dataset": ["pretrain", "--dataset", "cifar11"],
            "missing data root": ["pretrain", *TINY, "--dataset", "mnist", "--data-root", "nope"],
            "batch > data": ["pretrain", *TINY, "--limit", "8"],
            "resume missing run": ["pretrain", *TINY, "--name", "nope", "--resume"],
            "resume other method": ["pretrain", *TINY, "--runs-root", "runs", "--name", "ok",
                                    "--method", "byol", "--resume"],
            "weights garbage": ["pretrain", *TINY, "--method", "supervised-imagenet",
                                "--backbone", "resnet18", "--weights", "garbage.pth"],
            "weights missing": ["pretrain", *TINY, "--method", "supervised-imagenet",
                                "--backbone", "resnet18", "--weights", "nope.pth"],
            "bad flag": ["pretrain", "--bogus"],
            "export existing out": ["export", "runs/ok", "--out", "enc.safetensors"],
            "export out dir": ["export", "runs/ok", "--out", "a_dir"],
            "export out under file": ["export", "runs/ok", "--out", "bad.yaml/enc.safetensors"],
            "export broken ckpt": ["export", "broken", "--out", "x.safetensors"],
            "export missing run": ["export", "nope", "--out", "x.safetensors"],
            "eval truncated safetensors": ["eval", "knn", "trunc.safetensors", "--no-store"],
            "eval garbage as ckpt": ["eval", "knn", "garbage.pth", "--no-store"],
            "eval dataset cifar11": ["eval", "knn", "enc.safetensors", "--dataset", "cifar11"],
            "eval k -5": ["eval", "knn", "enc.safetensors", "--k", "-5"],
            "eval k 0": ["eval", "knn", "enc.safetensors", "--k", "0"],
            "eval temperature 0": ["eval", "knn", "enc.safetensors", "--temperature", "0"],
            "eval val-fraction 1.5": ["eval", "linear", "enc.safetensors", "--val-fraction", "1.5"],
            "eval limit-train 0": ["eval", "linear", "enc.safetensors", "--limit-train", "0"],
            "eval limit-test -1": ["eval", "linear", "enc.safetensors", "--limit-test", "-1"],
            "eval device gpu7": ["eval", "linear", "enc.safetensors", "--device", "gpu7"],
            "finetune epochs 0": ["eval", "finetune", "enc.safetensors", "--label-fraction", "0.1",
                                  "--epochs", "0"],
            "finetune batch 0": ["eval", "finetune", "enc.safetensors", "--label-fraction", "0.1",
                                 "--batch-size", "0"],
            "finetune fraction 2": ["eval", "finetune", "enc.safetensors", "--label-fraction", "2"],
            "eval small test set": ["eval", "knn", "enc.safetensors", "--limit-test", "20",
                                    "--no-store"],
            # issue 19
            "batch_size 1": ["pretrain", *TINY, "--set", "train.batch_size=1"],
            "image_size 100000": ["pretrain", *TINY, "--set", "data.image_size=100000"],
            "config /dev/null": ["pretrain", "--config", "/dev/null"],
            "data root a file": ["pretrain", *TINY, "--dataset", "mnist", "--data-root", "bad.yaml"],
            "name over 255 bytes": ["pretrain", *TINY, "--runs-root", "runs", "--name", "n" * 300],
            "export out name too long": ["export", "runs/ok", "--out", "e" * 300 + ".safetensors"],
            "export metadata image_size -5": ["eval", "knn", "size-5.safetensors", "--no-store"],
            "export metadata mean nan": ["eval", "knn", "mean_nan.safetensors", "--no-store"],
            "export metadata std 0": ["eval", "knn", "std0.safetensors", "--no-store"],
            "export zeroed bytes": ["eval", "knn", "zeroed.safetensors", "--no-store"],
            "grid name ../../escape": ["reproduce", "escape.yaml", "--dry-run"],
            "grid random_init maybe": ["reproduce", "maybe.yaml", "--dry-run"],
            "overwrite a Lightning layout": ["pretrain", *TINY, "--runs-root", "runs", "--name",
                                             "lightning", "--overwrite"],
            "overwrite a user file in checkpoints/": ["pretrain", *TINY, "--runs-root", "runs",
                                                      "--name", "nested", "--overwrite"],
            "resume a locked run": ["pretrain", *TINY, "--runs-root", "runs", "--name", "locked",
                                    "--resume"],
            "overwrite a locked run": ["pretrain", *TINY, "--runs-root", "runs", "--name", "locked",
                                       "--overwrite"],
            "folder eval test class train lacks": ["eval", "knn", "enc.safetensors", "--dataset",
                                                   "folder", "--data-root", "imgs",
                                                   "--force-small-test", "--no-store"],
            "store a directory in the way": ["eval", "knn", "enc.safetensors", "--store",
                                             "empty_dir"],
            "store under a file": ["eval", "knn", "enc.safetensors", "--store", "bad.yaml/r.jsonl"],
            "overwrite, NaN at step 1": ["pretrain", *TINY, "--max-steps", "3", "--runs-root", "runs",
                                         "--name", "good", "--overwrite", "--set", "optim.lr=1e38"],
        }

        def unchanged(name: str) -> Callable[[], str | None]:
            folder = d / name if name == "victim" else d / "runs" / name
            return lambda: None if files_of(folder) == kept[name] else f"{folder} changed"

        # Beyond the one line: what must still be there afterwards.
        checks: dict[str, Callable[[], str | None]] = {
            "overwrite a user folder": unchanged("victim"),
            "overwrite a Lightning layout": unchanged("lightning"),
            "overwrite a user file in checkpoints/": unchanged("nested"),
            "overwrite, NaN at step 1": unchanged("good"),
            "resume a locked run": unchanged("locked"),  # the holder's lock and files too
            "overwrite a locked run": unchanged("locked"),
            "grid name ../../escape": lambda: "wrote outside results/grids" if any(
                d.rglob("escape")) else None,
        }
        tracebacks = wrong = 0
        for name, args in cases.items():
            done = tribyol(*args, cwd=d)
            errors = [line for line in done.stderr.splitlines()
                      if line.startswith("error: ") or (line.startswith("tribyol") and ": error: " in line)]
            traceback = "Traceback" in done.stderr
            lost = checks[name]() if name in checks else None
            ok = done.returncode == 2 and len(errors) == 1 and not traceback and lost is None
            tracebacks += traceback
            wrong += not ok
            shown = errors[0] if errors else done.stderr.strip().splitlines()[-1:]
            shown = f"{lost}; {shown}" if lost else shown
            print(f"{'ok ' if ok else 'BAD'} rc={done.returncode} {name}: {str(shown)[:150]}")
        print(f"{len(cases)} cases: {tracebacks} tracebacks, {wrong} not (rc 2, one error line)")
        return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
