"""Run the CLI on a list of ordinary mistakes and count the ones that end in a traceback.

    python experiments/bad_input_sweep.py            # prints one line per case and a summary

Each case must exit 2 with exactly one ``error:`` line (argparse's ``tribyol ...: error:``
counts) and no "Traceback". Runs in a temporary folder; needs no data beyond sklearn's digits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

TINY = ["--dataset", "digits", "--limit", "64", "--batch-size", "16", "--epochs", "1",
        "--precision", "32", "--accelerator", "cpu", "--set", "model.width=8",
        "--set", "train.progress_bar=false"]


def tribyol(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tribyol.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        assert tribyol("pretrain", *TINY, "--max-steps", "2", "--run-dir", "runs", "--name", "ok",
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
            "overwrite a user folder": ["pretrain", *TINY, "--run-dir", ".", "--name", "victim",
                                        "--overwrite"],
            "accelerator gpu": ["pretrain", *TINY, "--accelerator", "gpu"],
            "strategy bogus": ["pretrain", *TINY, "--strategy", "bogus"],
            "devices 0": ["pretrain", *TINY, "--devices", "0"],
            "unknown method": ["pretrain", "--method", "tribyoll"],
            "unknown dataset": ["pretrain", "--dataset", "cifar11"],
            "missing data root": ["pretrain", *TINY, "--dataset", "mnist", "--data-root", "nope"],
            "batch > data": ["pretrain", *TINY, "--limit", "8"],
            "resume missing run": ["pretrain", *TINY, "--name", "nope", "--resume"],
            "resume other method": ["pretrain", *TINY, "--run-dir", "runs", "--name", "ok",
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
        }
        tracebacks = wrong = 0
        for name, args in cases.items():
            done = tribyol(*args, cwd=d)
            errors = [line for line in done.stderr.splitlines()
                      if line.startswith("error: ") or (line.startswith("tribyol") and ": error: " in line)]
            traceback = "Traceback" in done.stderr
            ok = done.returncode == 2 and len(errors) == 1 and not traceback
            tracebacks += traceback
            wrong += not ok
            shown = errors[0] if errors else done.stderr.strip().splitlines()[-1:]
            print(f"{'ok ' if ok else 'BAD'} rc={done.returncode} {name}: {str(shown)[:150]}")
        print(f"{len(cases)} cases: {tracebacks} tracebacks, {wrong} not (rc 2, one error line)")
        return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
