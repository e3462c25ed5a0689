"""A run written by an older version resumes as it started: its normalisation kept. (Its older
config keys are read through ``config.upgrade_tree``: tests/config/test_upgrade.py.)"""

from __future__ import annotations

import torch

from tribyol.checkpoints import CHECKPOINT_NAME, add_checksum, load_checkpoint
from tribyol.engine import pretrain


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
