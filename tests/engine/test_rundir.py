"""Run directories: only tribyol runs are ever replaced, nothing is written before validation,
and runs are named and recorded by the budget they ran (resume checks: test_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_FLAGS as TINY
from tests.helpers import error_line
from tribyol.checkpoints import load_checkpoint
from tribyol.cli import main
from tribyol.engine import RunDirExistsError, pretrain
from tribyol.engine.rundir import RUN_MARKER
from tribyol.errors import ConfigError


def user_folder(path: Path) -> dict[Path, bytes]:
    """A folder of someone's own files: images and a README."""
    files = {path / "README.md": b"my notes", path / "img" / "0001.png": b"\x89PNG fake"}
    for file, data in files.items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
    return files


def still_there(files: dict[Path, bytes]) -> bool:
    return all(f.exists() and f.read_bytes() == data for f, data in files.items())


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    files = user_folder(tmp_path / "runs" / "victim")
    assert main(["pretrain", *TINY, "--max-steps", "1", "--runs-root", str(tmp_path / "runs"),
                 "--name", "victim", "--overwrite"]) == 2
    line = error_line(capsys)
    assert "is not a tribyol run directory" in line and "README.md" in line and RUN_MARKER in line
    assert still_there(files)


def test_overwrite_refuses_a_run_holding_foreign_files(tiny, capsys) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    (run_dir / "my_analysis.ipynb").write_text("{}")
    with pytest.raises(RunDirExistsError, match="my_analysis.ipynb"):
        pretrain(cfg, overwrite=True)
    assert (run_dir / "my_analysis.ipynb").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("name", [".", "..", "../x", "a/b", "/abs/path", ""])
def test_name_must_be_one_plain_component(tmp_path: Path, capsys, name: str) -> None:
    runs = tmp_path / "parent" / "runs"
    sibling = user_folder(runs / "other_run")
    assert main(["pretrain", *TINY, "--runs-root", str(runs), "--name", name, "--overwrite"]) == 2
    assert "must be one plain folder name" in error_line(capsys)
    assert still_there(sibling)


def test_overwrite_with_a_bad_data_root_keeps_the_old_run(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    args = ["pretrain", *TINY, "--max-steps", "2", "--runs-root", str(runs), "--name", "r"]
    assert main(args) == 0
    before = (runs / "r" / "checkpoints" / "last.ckpt").read_bytes()
    assert main([*args, "--dataset", "mnist", "--data-root", str(tmp_path / "typo"), "--overwrite"]) == 2
    assert "MNIST not found" in error_line(capsys)
    assert (runs / "r" / "checkpoints" / "last.ckpt").read_bytes() == before
    assert [p.name for p in runs.iterdir()] == ["r"]  # nothing left aside


def test_overwrite_that_fails_to_start_restores_the_old_run(tiny, monkeypatch) -> None:
    import tribyol.engine.run as run

    cfg = tiny(("train.max_steps", 2), ("name", "r"))
    run_dir = pretrain(cfg)
    before = (run_dir / "checkpoints" / "last.ckpt").read_bytes()

    def broken_trainer(*args, **kwargs):
        raise RuntimeError("the new run could not start")

    monkeypatch.setattr(run, "build_trainer", broken_trainer)
    with pytest.raises(RuntimeError, match="could not start"):
        pretrain(cfg, overwrite=True)
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]


def test_overwrite_replaces_a_run_once_the_new_one_starts(tiny) -> None:
    cfg = tiny(("train.max_steps", 2), ("name", "r"))
    run_dir = pretrain(cfg)
    (run_dir / "config.attempt0.yaml").write_text("{}")  # a file of the old run's, not the new
    pretrain(tiny(("train.max_steps", 3), ("name", "r")), overwrite=True)
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert not (run_dir / "config.attempt0.yaml").exists()
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]  # the old one is gone


def test_overwrite_whose_first_step_turns_nan_keeps_the_old_run(tmp_path: Path, capsys) -> None:
    """lr=1e38: the first update leaves huge (finite) weights, the next loss is NaN. The
    default log_every_steps (10) would check it only at the end, after the old run was gone."""
    runs = tmp_path / "runs"
    args = ["pretrain", *TINY, "--max-steps", "3", "--runs-root", str(runs), "--name", "good"]
    assert main(args) == 0
    old = {p: p.read_bytes() for p in (runs / "good").rglob("*") if p.is_file()}
    assert main([*args, "--overwrite", "--set", "optim.lr=1e38"]) == 2
    line = error_line(capsys)
    assert "NaN/Inf" in line and f"the run it was to replace is back in {runs / 'good'}" in line
    assert {p: p.read_bytes() for p in (runs / "good").rglob("*") if p.is_file()} == old
    assert [p.name for p in runs.iterdir()] == ["good"]  # nothing left aside


def test_overwrite_with_only_corrupt_images_keeps_the_old_run(tmp_path: Path, capsys) -> None:
    runs, bad = tmp_path / "runs", tmp_path / "allbad"
    for label in ("a", "b"):
        (bad / label).mkdir(parents=True)
        for i in range(16):
            (bad / label / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    args = ["pretrain", *TINY, "--max-steps", "2", "--runs-root", str(runs), "--name", "good"]
    assert main(args) == 0
    before = (runs / "good" / "checkpoints" / "last.ckpt").read_bytes()
    assert main([*args, "--overwrite", "--dataset", "folder", "--data-root", str(bad),
                 "--set", "data.limit=null", "--set", "data.image_size=16"]) == 2
    assert "can be decoded" in error_line(capsys)
    assert (runs / "good" / "checkpoints" / "last.ckpt").read_bytes() == before
    assert [p.name for p in runs.iterdir()] == ["good"]


def test_overwrite_refuses_a_lightning_layout_without_the_marker(tmp_path: Path, capsys) -> None:
    """config.yaml + checkpoints/ is what Lightning and Hydra write too: not taken for a run."""
    run = tmp_path / "runs" / "theirs"
    files = {run / "config.yaml": b"model: big\n",
             run / "checkpoints" / "epoch=99-step=100000.ckpt": b"weeks of training"}
    for file, data in files.items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
    assert main(["pretrain", *TINY, "--max-steps", "1", "--runs-root", str(tmp_path / "runs"),
                 "--name", "theirs", "--overwrite"]) == 2
    line = error_line(capsys)
    assert "is not a tribyol run directory" in line and "epoch=99-step=100000.ckpt" in line
    assert still_there(files) and sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]


@pytest.mark.parametrize("added", ["checkpoints/best_by_hand.ckpt", "logs/my_notes.txt",
                                   "logs/attempt0/plot.png", "tb/notes", "logs/attempt0/mine/"])
def test_overwrite_refuses_a_run_with_files_added_inside(tiny, added: str) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    path = run_dir / added.rstrip("/")
    if added.endswith("/"):
        path.mkdir()
        (path / "data.csv").write_text("1,2")
    else:
        path.write_text("mine")
    with pytest.raises(RunDirExistsError, match=f"did not write \\({added}\\)"):
        pretrain(cfg, overwrite=True)
    assert path.exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    pretrain(tiny(("train.max_steps", 2), ("name", "r")), resume=True)  # resuming deletes nothing
    assert path.exists()


def test_overwrite_refuses_a_link_inside_a_run(tiny, tmp_path: Path) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    mine = tmp_path / "mine.ckpt"
    mine.write_text("mine")
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    (run_dir / "checkpoints" / "last.ckpt").symlink_to(mine)  # a run's name, not a run's file
    with pytest.raises(RunDirExistsError, match="checkpoints/last.ckpt"):
        pretrain(cfg, overwrite=True)
    assert (run_dir / "checkpoints" / "last.ckpt").is_symlink() and mine.read_text() == "mine"


def test_a_name_too_long_for_a_folder_is_one_error_line(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    assert main(["pretrain", *TINY, "--max-steps", "1", "--runs-root", str(runs),
                 "--name", "é" * 128]) == 2  # 256 bytes
    assert "at most 255" in error_line(capsys)
    assert not runs.exists()


def test_a_run_with_a_name_of_250_characters_can_be_replaced(tiny) -> None:
    """Its aside name (.<name>.replaced-<pid>) would be too long; a hashed one is used."""
    cfg = tiny(("train.max_steps", 1), ("name", "n" * 250))
    run_dir = pretrain(cfg)
    pretrain(tiny(("train.max_steps", 2), ("name", "n" * 250)), overwrite=True)
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]


def test_failed_setup_writes_nothing(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    args = ["pretrain", *TINY, "--max-steps", "1", "--runs-root", str(runs), "--name", "r"]
    assert main([*args, "--strategy", "bogus"]) == 2
    assert "strategy" in error_line(capsys)
    assert not runs.exists()
    assert main(args) == 0  # the corrected retry needs no --overwrite


def test_runs_are_named_and_recorded_by_the_budget_run(tiny) -> None:
    cfg = tiny(("train.max_steps", 3), ("train.epochs", 80))
    run_dir = pretrain(cfg)
    assert run_dir.name == "tribyol_convnet_b16_s3_digits"  # not e80: it ran 3 steps
    record = json.loads((run_dir / RUN_MARKER).read_text())
    assert record["format"] == "tribyol-run-v1" and record["status"] == "finished"
    assert (record["steps_done"], record["steps_per_epoch"], record["epochs_done"]) == (3, 4, 0.75)
    assert (record["batch_size"], record["accumulate"], record["world_size"]) == (16, 1, 1)
    # an epoch budget that max_steps does not cut keeps its epochs in the name
    assert pretrain(tiny(("train.max_steps", 100))).name == "tribyol_convnet_b16_e1_digits"


def test_config_yaml_holds_the_resolved_data_values(tiny) -> None:
    run_dir = pretrain(tiny(("train.max_steps", 1)))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["channels"] == 1  # digits are grayscale; the default says 3
    assert saved["data"]["image_size"] == 16


def test_bad_seed_is_refused() -> None:
    from tribyol.resolve import load_config

    with pytest.raises(ConfigError, match=r"train.seed must be in \[0, 2\*\*32\)"):
        load_config(None, [("train.seed", 2**32)])


def _interrupt_once_started(monkeypatch) -> None:
    """Ctrl+C right after the run wrote run.json ("starting") and config.yaml, before any step."""
    import tribyol.engine.run as run

    real = run.write_marker

    def write_then_interrupt(run_dir: Path, **fields: object) -> None:
        real(run_dir, **fields)
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "write_marker", write_then_interrupt)


def test_a_new_run_interrupted_before_its_first_step_leaves_no_folder(tiny, monkeypatch) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = Path(cfg.runs_root) / "r"
    _interrupt_once_started(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg)
    assert not run_dir.exists()  # it held run.json "starting" and config.yaml: a retry needed --resume
    monkeypatch.undo()
    assert pretrain(cfg) == run_dir  # the same command again, as it was
    assert json.loads((run_dir / RUN_MARKER).read_text())["steps_done"] == 1


def test_an_interrupted_resume_keeps_the_run(tiny, monkeypatch) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    _interrupt_once_started(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(("train.max_steps", 2), ("name", "r")), resume=True)
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 1
