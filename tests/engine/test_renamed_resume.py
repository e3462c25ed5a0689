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
    assert "method.views is deprecated; use method.num_views" in caplog.text
    assert yaml.safe_load(Path(config).read_text())["method"]["num_views"] == 3
