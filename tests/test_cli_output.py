"""What the CLI prints: results on stdout, plain progress lines on stderr when it is not a
terminal (CI, SLURM, ``> log``), every flag's default in --help, --version, and config errors
before torch or Lightning is imported."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tribyol.cli import build_parser, main

TINY = [
    "--dataset", "digits", "--limit", "64", "--batch-size", "16", "--epochs", "1",
    "--precision", "32", "--accelerator", "cpu", "--devices", "1",
    "--set", "model.width=8", "--set", "model.hidden_dim=16", "--set", "model.proj_dim=8",
    "--set", "train.log_every_steps=2",
]


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tribyol.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, **kwargs)


def test_piped_run_prints_plain_lines_on_stderr_and_only_results_on_stdout(tmp_path: Path) -> None:
    done = cli("pretrain", *TINY, "--runs-root", str(tmp_path), "--name", "r")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"run directory: {tmp_path / 'r'}\n"  # results only
    for noise in ("\r", "Training:", "v_num", "site-packages"):
        assert noise not in done.stdout + done.stderr, noise
    steps = [line for line in done.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["2/4", "4/4"]
    assert re.fullmatch(r"step 2/4  epoch 1/1  loss \d+\.\d{4}  rank \d+\.\d  (images/s \d+  )?"
                        r"eta \d+:\d\d:\d\d", steps[0])


def test_pretrain_help_gives_every_flag_a_meaning_and_default() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    pretrain = sub.choices["pretrain"]
    for action in pretrain._actions:
        if action.dest in ("help", "config", "set", "resume", "overwrite", "weights", "runs_root", "name",
                           "data_root"):
            continue
        assert action.help and "default" in action.help, action.dest


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert re.fullmatch(r"tribyol \S+\n", capsys.readouterr().out)


def test_bad_flag_shows_the_sub_commands_usage() -> None:
    done = cli("pretrain", "--bogus-flag")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: tribyol pretrain ")
    assert "unrecognized arguments: --bogus-flag" in done.stderr


def test_config_errors_come_before_torch_and_lightning_are_imported() -> None:
    code = (
        "import sys\n"
        "from tribyol.cli import main\n"
        "rc = main(['pretrain', '--set', 'train.batchsize=8'])\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "2 []", done.stdout + done.stderr
    assert "unknown config key 'train.batchsize'" in done.stderr


def test_pretrain_help_defaults_are_the_configs() -> None:
    """Each flag's meaning and default are read from its option field, not written again."""
    from tribyol.cli import PRETRAIN_FLAGS, pretrain_option
    from tribyol.config.fields import flag_help

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {a.dest: a.help for a in sub.choices["pretrain"]._actions}
    for attr in PRETRAIN_FLAGS:
        assert helps[attr] == flag_help(pretrain_option(attr)[0]).replace("%", "%%"), attr
    assert "(default 32)" in helps["batch_size"] and "(default: all)" in helps["limit"]
    assert "3" not in helps["num_views"].replace(">= 3", "")  # TriBYOL's default is its own


def test_pretrain_help_names_every_registered_dataset_and_method() -> None:
    """The --dataset and --method help lists are written out (the registries import torch);
    this keeps them from drifting from the registries."""
    from tribyol.cli import pretrain_option
    from tribyol.data import DATASETS
    from tribyol.methods import METHODS

    listed = {name: set(re.findall(r"[a-z0-9-]+", pretrain_option(name)[0].metadata["help"]))
              for name in ("dataset", "method")}
    assert set(DATASETS) <= listed["dataset"], set(DATASETS) - listed["dataset"]
    assert set(METHODS) <= listed["method"], set(METHODS) - listed["method"]


def _step_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("step ")]


def test_a_run_shorter_than_log_every_steps_still_logs_its_last_step(tmp_path: Path,
                                                                      capsys) -> None:
    # 3 steps, logging every 10: it used to print no progress line and write no metrics.csv.
    assert main(["pretrain", *TINY, "--set", "train.log_every_steps=10", "--max-steps", "3",
                 "--runs-root", str(tmp_path), "--name", "r"]) == 0
    steps = _step_lines(capsys.readouterr().err)
    assert [line.split()[1] for line in steps] == ["3/3"]
    (metrics,) = (tmp_path / "r" / "logs").glob("*/metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [2]  # Lightning counts from 0: the third step


def test_the_step_line_shows_the_epochs_max_steps_lets_the_run_reach(tmp_path: Path,
                                                                      capsys) -> None:
    # 4 steps an epoch; --max-steps 6 ends an 80-epoch run in its second epoch.
    assert main(["pretrain", *TINY, "--epochs", "80", "--max-steps", "6",
                 "--runs-root", str(tmp_path), "--name", "r"]) == 0
    steps = _step_lines(capsys.readouterr().err)
    assert [line.split("  ")[:2] for line in steps] == [
        ["step 2/6", "epoch 1/2"], ["step 4/6", "epoch 1/2"], ["step 6/6", "epoch 2/2"]]


def test_run_directory_is_printed_by_rank_zero_only(tmp_path: Path, capsys, monkeypatch) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    import tribyol.engine

    monkeypatch.setattr(tribyol.engine, "pretrain", lambda cfg, **kwargs: tmp_path / "r")
    args = ["pretrain", "--dataset", "digits", "--runs-root", str(tmp_path), "--name", "r"]
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # what Lightning sets in a DDP child
    assert main(args) == 0
    assert "run directory" not in capsys.readouterr().out
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert main(args) == 0
    assert capsys.readouterr().out == f"run directory: {tmp_path / 'r'}\n"


def test_top_level_help_describes_the_tool_and_the_demo_time_agrees_everywhere(capsys) -> None:
    from tribyol.cli import DEMO_DURATION

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "self-supervised" in text.lower() and "small batches" in text
    assert "``" not in text and "other modules register" not in text  # not the module docstring
    assert f"demo an offline demo, {DEMO_DURATION}" in text
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert f"runs a short offline demo on real data ({DEMO_DURATION} once installed)" in readme
    assert "~1 min" not in readme and "3-minute" not in readme
