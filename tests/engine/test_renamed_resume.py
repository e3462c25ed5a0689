"""Runs written before a rename (issue 12's vocabulary) still resume: a Cross checkpoint with
``student``/``teacher`` weights, and a config.yaml with TriBYOL's old ``views`` option."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from tribyol.checkpoints import CHECKPOINT_NAME, add_checksum, load_checkpoint
from tribyol.engine import pretrain
from tribyol.engine.rundir import CONFIG_NAME


def test_cross_checkpoint_with_student_teacher_keys_resumes(tiny) -> None:
    run_dir = pretrain(tiny(("method.name", "cross"), ("name", "old")))
    path = run_dir / "checkpoints" / CHECKPOINT_NAME
    ckpt = load_checkpoint(path)
    old_names = {"method.online.": "method.student.", "method.target.": "method.teacher."}
    state = {}
    for key, value in ckpt["state_dict"].items():
        for new, old in old_names.items():
            key = old + key[len(new):] if key.startswith(new) else key
        state[key] = value
    assert any(k.startswith("method.teacher.") for k in state)
    ckpt["state_dict"] = state
    ckpt.pop("tribyol_checksum")
    add_checksum(ckpt)
    torch.save(ckpt, path)
    steps = ckpt["global_step"]

    pretrain(tiny(("method.name", "cross"), ("name", "old"), ("train.epochs", 2)), resume=True)
    resumed = load_checkpoint(path)
    assert resumed["global_step"] == 2 * steps
    assert not any(k.startswith(("method.student.", "method.teacher.")) for k in resumed["state_dict"])


def test_config_with_the_old_views_option_resumes(tiny, caplog) -> None:
    run_dir = pretrain(tiny(("name", "old")))
    config = run_dir / CONFIG_NAME
    saved = yaml.safe_load(config.read_text())
    assert saved["method"]["num_views"] == 3  # the resolved options are recorded by their new name
    saved["method"]["views"] = saved["method"].pop("num_views")
    config.write_text(yaml.safe_dump(saved))

    pretrain(tiny(("name", "old"), ("train.epochs", 2)), resume=True)
    assert yaml.safe_load(Path(config).read_text())["method"]["num_views"] == 3


def test_resume_keeps_the_normalisation_the_run_started_with(tiny, tmp_path, caplog) -> None:
    """A grayscale folder run from before channel statistics were luma-weighted normalised with
    0.5 / 0.5; resumed, it keeps those instead of switching mid-run."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    folder = [("data.dataset", "folder"), ("data.root", str(root)), ("data.limit", None),
              ("data.channels", 1), ("train.batch_size", 8), ("name", "gray")]
    run_dir = pretrain(tiny(*folder))
    path = run_dir / "checkpoints" / CHECKPOINT_NAME
    ckpt = load_checkpoint(path)
    assert ckpt["hyper_parameters"]["data_info"]["mean"] != (0.5,)  # this version's rule
    ckpt["hyper_parameters"]["data_info"].update(mean=(0.5,), std=(0.5,))
    ckpt.pop("tribyol_checksum")
    add_checksum(ckpt)
    torch.save(ckpt, path)

    pretrain(tiny(*folder, ("train.epochs", 2)), resume=True)
    resumed = load_checkpoint(path)
    assert resumed["global_step"] == 2 * ckpt["global_step"]
    assert tuple(resumed["hyper_parameters"]["data_info"]["mean"]) == (0.5,)
    assert "resuming with the run's own normalisation, mean (0.5,)" in caplog.text


def test_a_run_from_before_extra_views_says_its_augmentation_changes(tiny, caplog) -> None:
    run_dir = pretrain(tiny(("name", "old3")))
    config = run_dir / CONFIG_NAME
    saved = yaml.safe_load(config.read_text())
    saved["views"] = saved.pop("augment")  # as config.yaml was written before the renames
    del saved["views"]["extra_views"]  # and before the option existed
    config.write_text(yaml.safe_dump(saved))
    pretrain(tiny(("name", "old3"), ("train.epochs", 2)), resume=True)
    assert "resuming with augment.extra_views changed: 'cycle' -> 'byol-pairs'" in caplog.text
