"""Bad input through the real CLI: one line `error: ...` naming the problem and the fix, exit 2.

Every case here is listed, with its exact message, in docs/reliability.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import TINY_FLAGS as TINY
from tests.helpers import error_line
from tribyol.cli import main
from tribyol.errors import ConfigError
from tribyol.resolve import load_config

# (arguments after `tribyol pretrain`, substrings the error line must hold)
BAD_CONFIG = [
    (["--set", "train.batchsize=8"],
     ["unknown config key 'train.batchsize'", "Did you mean 'batch_size'?"]),
    (["--method", "tribyol", "--set", "method.tua=0.9"],
     ["unknown config key 'method.tua'", "Did you mean 'tau'?"]),
    (["--method", "simclr", "--set", "method.temprature=0.2"],
     ["unknown config key 'method.temprature'", "Did you mean 'temperature'?"]),
    (["--batch-size", "0"], ["train.batch_size must be auto or a whole number >= 2", "got 0"]),
    # one image per device: BatchNorm cannot normalise it (it was a ValueError traceback), and
    # under GroupNorm the per-dimension std and the contrastive losses need two
    (["--set", "train.batch_size=1"],
     ["train.batch_size must be auto or a whole number >= 2 (two images per device: the "
      "per-dimension std, the contrastive losses and BatchNorm need them), got 1"]),
    # 100000 px views: 3.8 TB a batch (it tried to allocate them)
    (["--set", "data.image_size=100000"], ["data.image_size must be in [8, 8192], got 100000"]),
    (["--set", "data.resize=100000"], ["data.resize must be in [8, 8192], got 100000"]),
    (["--dataset", "cifar10", "--set", "data.image_size=8192", "--batch-size", "100000"],
     ["one batch of views takes 80.5 TB (train.batch_size 100000 x 3 channel(s) x 8192 x 8192",
      "lower data.image_size or train.batch_size"]),
    (["--config", "/dev/null"], ["config file /dev/null is not a regular file"]),
    (["--set", "method.tau=1.5"], ["method.tau must be in [0, 1], got 1.5"]),
    (["--set", "method.tau=-0.1"], ["method.tau must be in [0, 1], got -0.1"]),
    (["--method", "tribyoll"], ["unknown method 'tribyoll'", "Did you mean 'tribyol'?", "Known:"]),
    (["--dataset", "cifar11"], ["unknown dataset 'cifar11'", "Did you mean 'cifar10'?"]),
    (["--precision", "fp16"], ["train.precision must be one of auto, bf16-mixed", "got 'fp16'"]),
    (["--backbone", "resnet19"], ["unknown backbone 'resnet19'", "Did you mean 'resnet18'?"]),
    (["--accelerator", "gpuu"],
     ["train.accelerator must be one of auto, cpu, gpu", "got 'gpuu'", "Did you mean 'gpu'?"]),
    (["--set", "optim.lr=fast"], ["optim.lr: expected a number, got 'fast'"]),
    (["--set", "optim.lr=-1"], ["optim.lr must be > 0"]),
    (["--set", "train.epochs=0"], ["train.epochs must be >= 1, got 0"]),
    (["--set", "augment.flip_p=1.5"], ["augment.flip_p must be in [0, 1], got 1.5"]),
    (["--set", "data.bad_images=ignore"], ["data.bad_images must be one of skip, error, got 'ignore'"]),
    (["--set", "train.ckpt_every_steps=-5"], ["train.ckpt_every_steps must be >= 0"]),
    (["--set", "train.devices=0"], ["train.devices must be auto, a count >= 1"]),
    (["--num-views", "2"], ["method.num_views", "got 2"]),
    (["--set", "method.views=3"], ["method.views"]),  # TriBYOL's old name is no option now
    (["--config", "no/such/config.yaml"], ["config file no/such/config.yaml does not exist"]),
    (["--set", "optim.lr"], ["override 'optim.lr' must look like key=value"]),
]


@pytest.mark.parametrize(("args", "expected"), BAD_CONFIG, ids=lambda x: " ".join(x)[:40])
def test_bad_config_errors_before_anything_runs(tmp_path: Path, capsys, args, expected) -> None:
    runs = tmp_path / "runs"
    assert main(["pretrain", "--runs-root", str(runs), *args]) == 2
    line = error_line(capsys)
    for text in expected:
        assert text in line
    assert not runs.exists()  # rejected before a run directory (or any data) was touched


def test_method_options_validate_without_the_cli() -> None:
    with pytest.raises(ConfigError, match=r"Did you mean 'tau'\?"):
        load_config(None, [("method.name", "byol"), ("method.tauu", 0.9)])
    # an option alone keeps the default method (it used to turn into "unknown method 'None'")
    method = load_config(None, ["method.tau=0.9"]).method
    assert (method.name, method.tau) == ("tribyol", 0.9)
    # and the resolved config records every option, defaults filled in
    assert method.num_views == 3 and method.target_policy == "shared"


def test_missing_dataset_root_names_the_path_and_the_fix(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    missing = tmp_path / "no_such_folder"
    assert main(["pretrain", *TINY, "--dataset", "folder", "--data-root", str(missing),
                 "--runs-root", str(runs)]) == 2
    line = error_line(capsys)
    assert f"image folder {missing} does not exist" in line and "--data-root" in line
    (tmp_path / "empty").mkdir()
    assert main(["pretrain", *TINY, "--dataset", "mnist", "--data-root", str(tmp_path / "empty"),
                 "--runs-root", str(runs)]) == 2
    line = error_line(capsys)
    assert "MNIST not found: looked in" in line and "--download" in line


def test_empty_config_file_and_a_file_as_data_root_say_what_is_wrong(tmp_path: Path,
                                                                     capsys) -> None:
    runs = tmp_path / "runs"
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert main(["pretrain", "--config", str(empty), "--runs-root", str(runs)]) == 2
    line = error_line(capsys)
    assert f"config file {empty} is empty (no keys)" in line and "does not exist" not in line
    assert main(["pretrain", *TINY, "--dataset", "mnist", "--data-root", str(empty),
                 "--runs-root", str(runs)]) == 2
    line = error_line(capsys)
    assert f"--data-root {empty} is a file, not a folder" in line and "not found" not in line
    assert not runs.exists()


def test_a_last_batch_of_one_image_is_dropped_not_a_crash(tmp_path: Path, capsys) -> None:
    # 33 images at batch 16: two full batches, and one image BatchNorm could not normalise.
    runs = tmp_path / "runs"
    assert main(["pretrain", *TINY, "--limit", "33", "--runs-root", str(runs), "--name", "r"]) == 0
    assert json.loads((runs / "r" / "run.json").read_text())["steps_done"] == 2


def test_batch_larger_than_the_data_fails_before_training(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    assert main(["pretrain", *TINY, "--limit", "8", "--runs-root", str(runs), "--name", "x"]) == 2
    assert "8 training images are fewer than one batch of 16" in error_line(capsys)
    assert not (runs / "x").exists()  # nothing written: a retry needs no --overwrite


def test_existing_run_directory_resume_and_overwrite(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    args = ["pretrain", *TINY, "--set", "train.max_steps=1", "--runs-root", str(runs), "--name", "r"]
    assert main(["pretrain", *TINY, "--runs-root", str(runs), "--name", "nope", "--resume"]) == 2
    assert "--resume given but" in error_line(capsys)
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    line = error_line(capsys)
    assert "already exists" in line and "--resume" in line and "--overwrite" in line
    assert main([*args, "--overwrite"]) == 0
    assert main([*args, "--resume"]) == 0


def test_missing_or_corrupt_checkpoint_for_export(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "enc.safetensors")
    assert main(["export", str(tmp_path / "nope"), "--out", out]) == 2
    assert "does not exist; pass a run directory or a .ckpt file" in error_line(capsys)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert main(["export", str(run), "--out", out]) == 2
    assert "has no checkpoints/last.ckpt" in error_line(capsys)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    assert main(["export", str(run), "--out", out]) == 2
    assert "cannot read checkpoint" in error_line(capsys)


def test_missing_weights_for_eval(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "enc.safetensors"
    assert main(["eval", "knn", str(missing), "--no-store"]) == 2
    assert f"{missing} does not exist" in error_line(capsys)


# -- bad images, end to end ---------------------------------------------------------------------
def image_folder(root: Path) -> list[Path]:
    """Two classes of 16x16 PNGs plus two broken files: garbage, and a truncated real PNG."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for i in range(12):
            (root / label).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i:02d}.png")
    garbage = root / "a" / "03_garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    truncated = root / "b" / "05_truncated.png"
    data = (root / "b" / "05.png").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return [garbage, truncated]


FOLDER = ["--dataset", "folder", "--set", "data.image_size=16", "--set", "data.limit=null",
          "--set", "train.max_steps=2", "--set", "train.online_probe=false"]


def test_corrupt_images_are_skipped_and_named(tmp_path: Path, caplog, capsys) -> None:
    bad = image_folder(tmp_path / "imgs")
    with caplog.at_level(logging.WARNING, logger="tribyol"):
        assert main(["pretrain", *TINY, *FOLDER, "--data-root", str(tmp_path / "imgs"),
                     "--batch-size", "26", "--runs-root", str(tmp_path / "runs")]) == 0
    skipped = [r.getMessage() for r in caplog.records if "skipping corrupt image" in r.getMessage()]
    assert sorted(m.split()[3] for m in skipped) == sorted(map(str, bad))
    assert any("(2 skipped so far)" in m for m in skipped)


def test_corrupt_image_with_bad_images_error_names_the_file(tmp_path: Path, capsys) -> None:
    bad = image_folder(tmp_path / "imgs")
    assert main(["pretrain", *TINY, *FOLDER, "--data-root", str(tmp_path / "imgs"),
                 "--batch-size", "26", "--set", "data.bad_images=error",
                 "--runs-root", str(tmp_path / "runs")]) == 2
    line = error_line(capsys)
    assert "cannot decode image" in line and any(str(path) in line for path in bad)
    assert "data.bad_images=skip" in line


def test_digits_ok_sanity(tmp_path: Path) -> None:
    """The tiny flags above are valid: the failures are the bad inputs, not the baseline."""
    assert main(["pretrain", *TINY, "--set", "train.max_steps=1", "--runs-root", str(tmp_path)]) == 0
    assert torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)["global_step"] == 1


# -- issue 9: every ordinary mistake is one `error:` line, exit 2, no traceback ------------------
def _bad_yaml(tmp: Path) -> list[str]:
    (tmp / "bad.yaml").write_text("train:\n  batch_size: [1\n")
    return ["pretrain", "--config", str(tmp / "bad.yaml")]


def _tiny_export(tmp: Path) -> Path:
    """A real (tiny) exported encoder, made once per test that needs one."""
    runs = tmp / "runs"
    assert main(["pretrain", *TINY, "--max-steps", "1", "--runs-root", str(runs), "--name", "e"]) == 0
    out = tmp / "enc.safetensors"
    assert main(["export", str(runs / "e"), "--out", str(out)]) == 0
    return out


def _truncated_export(tmp: Path) -> list[str]:
    out = _tiny_export(tmp)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return ["eval", "knn", str(out), "--no-store"]


def _export_without_metadata_keys(tmp: Path) -> list[str]:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    out = _tiny_export(tmp)
    with safe_open(str(out), framework="pt") as f:
        meta = dict(f.metadata())
    del meta["in_channels"], meta["image_size"]
    save_file(load_file(str(out)), str(out), metadata=meta)
    return ["eval", "knn", str(out), "--no-store"]


def _bad_weights(tmp: Path) -> list[str]:
    (tmp / "resnet18.pth").write_bytes(b"this is not a torch file")
    return ["pretrain", *TINY, "--method", "supervised-imagenet", "--backbone", "resnet18",
            "--weights", str(tmp / "resnet18.pth"), "--runs-root", str(tmp / "runs")]


def _export_to(target: str):
    def make(tmp: Path) -> list[str]:
        runs = tmp / "runs"
        assert main(["pretrain", *TINY, "--max-steps", "1", "--runs-root", str(runs), "--name", "e"]) == 0
        (tmp / "a_dir").mkdir()
        (tmp / "a_file").write_text("x")
        return ["export", str(runs / "e"), "--out", str(tmp / target)]
    return make


NO_TRACEBACK = [
    ("yaml-syntax", _bad_yaml, ["is not valid YAML at line 3", "bad.yaml"]),
    ("set-bad-yaml", lambda t: ["pretrain", "--set", "optim.lr=[1"],
     ["override 'optim.lr=[1'", "not valid YAML"]),
    ("seed-negative", lambda t: ["pretrain", "--seed", "-1"], ["train.seed must be in [0, 2**32)"]),
    ("seed-too-big", lambda t: ["pretrain", "--seed", str(2**32)], ["train.seed must be in [0, 2**32)"]),
    ("lr-inf", lambda t: ["pretrain", "--set", "optim.lr=inf"], ["optim.lr: expected a finite number"]),
    ("strategy-bogus", lambda t: ["pretrain", *TINY, "--strategy", "bogus", "--runs-root", str(t / "r")],
     ["strategy='bogus'", "--strategy auto"]),
    ("weights-bad-file", _bad_weights, ["cannot read ImageNet weights", "--weights"]),
    ("export-out-dir", _export_to("a_dir"), ["is a directory", "pass a file path"]),
    ("export-out-unwritable", _export_to("a_file/enc.safetensors"), ["is not a writable folder"]),
    ("safetensors-truncated", _truncated_export, ["truncated or not a safetensors file"]),
    ("safetensors-no-metadata", _export_without_metadata_keys, ["metadata lacks in_channels, image_size"]),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in NO_TRACEBACK],
                         ids=[c[0] for c in NO_TRACEBACK])
def test_ordinary_mistakes_are_one_error_line(tmp_path: Path, capsys, make, expected) -> None:
    args = make(tmp_path)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_accelerator_gpu_without_gpu(tmp_path: Path, capsys) -> None:
    assert main(["pretrain", *TINY, "--accelerator", "gpu", "--runs-root", str(tmp_path / "r")]) == 2
    assert "no usable CUDA GPU" in error_line(capsys) and not (tmp_path / "r").exists()


def test_export_refuses_to_overwrite_unless_asked(tmp_path: Path, capsys) -> None:
    out = _tiny_export(tmp_path)
    before = out.read_bytes()
    assert main(["export", str(tmp_path / "runs" / "e"), "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in error_line(capsys)
    assert out.read_bytes() == before
    assert main(["export", str(tmp_path / "runs" / "e"), "--out", str(out), "--overwrite"]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".enc")] == []  # no temp left


@pytest.mark.parametrize(("extra", "expected"), [
    (["--method", "pirl-jigsaw", "--set", "method.grid=100"],
     "method 'pirl-jigsaw' cannot be built for this data: 16 px views cannot be cut into 100^2"),
    (["--set", "model.hidden_dim=100000000000"], "not enough memory to build the networks"),
], ids=["pirl-grid", "too-big"])
def test_networks_that_cannot_be_built_are_one_error_line(tmp_path: Path, capsys, extra,
                                                          expected) -> None:
    runs = tmp_path / "runs"
    assert main(["pretrain", *TINY, *extra, "--runs-root", str(runs)]) == 2
    assert expected in error_line(capsys)
    assert not runs.exists()  # nothing written
