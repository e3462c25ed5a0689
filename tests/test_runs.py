"""``tribyol runs``: the runs under a folder as a table; ``--resume RUN_DIR``'s saved config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tribyol.cli import main, resume_command
from tribyol.errors import ConfigError
from tribyol.runs import CONFIG_NAME, RUN_FORMAT, RUN_MARKER, find_runs, list_runs, resume_config


def make_run(folder: Path, checkpoint: bool = True, **fields) -> Path:
    folder.mkdir(parents=True)
    (folder / RUN_MARKER).write_text(json.dumps({"format": RUN_FORMAT, **fields}))
    (folder / CONFIG_NAME).write_text("name: null\n")
    if checkpoint:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"not read")
        os.utime(folder / "checkpoints" / "last.ckpt", (1_700_000_000, 1_700_000_000))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root / "a", status="finished", steps_done=5, steps_per_epoch=4, epochs_planned=2,
             max_steps=5, method="tribyol", dataset="digits")
    make_run(root / "grid" / "b", checkpoint=False, status="starting", epochs_planned=80,
             max_steps=-1, method="byol", dataset="cifar10")
    # Fields of other types (an older or damaged run.json) show as "?", not as a failure.
    make_run(root / "c", status="failed", steps_done="x", steps_per_epoch=None, method=3)
    make_run(root / ".a.replaced-123", status="finished")  # a replaced run set aside
    (root / "notes").mkdir()
    (root / "notes" / RUN_MARKER).write_text("not json")
    (root / "other").mkdir()
    (root / "other" / RUN_MARKER).write_text(json.dumps({"format": "someone-else"}))
    return root


def test_runs_are_found_and_hidden_or_foreign_folders_skipped(runs: Path) -> None:
    assert [p.relative_to(runs).as_posix() for p in find_runs(runs)] == ["a", "c", "grid/b"]


def test_each_row_says_status_steps_method_dataset_and_checkpoint(runs: Path) -> None:
    rows = {r.run: r for r in list_runs(runs)}
    a, b, c = rows["a"], rows["grid/b"], rows["c"]
    assert (a.status, a.steps_done, a.steps_planned, a.method, a.dataset) == \
        ("finished", 5, 5, "tribyol", "digits")
    assert (a.checkpoint_step, a.checkpoint_time) == (5, 1_700_000_000)
    # Not started: steps per epoch unknown, no max_steps, no checkpoint.
    assert (b.steps_done, b.steps_planned, b.checkpoint_step, b.checkpoint_time) == (None, None, None, None)
    # A failed run's steps_done is the failing step, not the checkpoint's.
    assert (c.steps_done, c.method, c.dataset, c.checkpoint_step) == (None, "?", "?", None)


def test_runs_command_prints_a_plain_table_on_stdout(runs: Path, capsys) -> None:
    assert main(["runs", str(runs)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "STEPS", "METHOD", "DATASET", "CKPT_STEP", "CKPT_TIME"]
    assert lines[1].split()[:6] == ["a", "finished", "5/5", "tribyol", "digits", "5"]
    assert lines[2].split()[:6] == ["c", "failed", "?/?", "?", "?", "?"]
    assert lines[3].split() == ["grid/b", "starting", "?/?", "byol", "cifar10", "-", "-"]
    assert len(lines) == 4 and err == ""


def test_runs_of_a_missing_folder_is_one_error_line(tmp_path: Path, capsys) -> None:
    assert main(["runs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: runs folder") and "does not exist" in err and "\n" not in err


def test_resume_config_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        resume_config(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no config.yaml"):
        resume_config(tmp_path / "empty")


def test_resume_config_refuses_another_config_or_run_folder(runs: Path) -> None:
    assert resume_config(runs / "a", None, [("train.max_steps", 9)]) == runs / "a" / CONFIG_NAME
    with pytest.raises(ConfigError, match="drop --config"):
        resume_config(runs / "a", "other.yaml")
    for override in [("name", "x"), "runs_root=elsewhere"]:
        with pytest.raises(ConfigError, match="names the run's folder"):
            resume_config(runs / "a", None, [override])


def test_resume_command_of_a_resume_from_a_folder_is_that_command() -> None:
    assert resume_command(["pretrain", "--resume", "runs/r", "--max-steps", "5"]) == \
        "tribyol pretrain --resume runs/r --max-steps 5"
    assert resume_command(["pretrain", "--resume=runs/r"]) == "tribyol pretrain --resume=runs/r"
    # The switch keeps its old form: the same flags, --resume at the end.
    assert resume_command(["pretrain", "--resume", "--name", "r", "--overwrite"]) == \
        "tribyol pretrain --name r --resume"


def test_marker_names_agree_with_the_engines() -> None:
    from tribyol.checkpoints import CHECKPOINT_NAME
    from tribyol.engine import rundir
    from tribyol.runs import CHECKPOINT_PATH

    assert (RUN_MARKER, RUN_FORMAT, CONFIG_NAME) == (rundir.RUN_MARKER, rundir.RUN_FORMAT, rundir.CONFIG_NAME)
    assert CHECKPOINT_PATH[-1] == CHECKPOINT_NAME
