"""Every example of docs/api.md runs, in order, as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import tribyol

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_api_examples_run(tmp_path: Path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 (our own docs)
    assert (tmp_path / "runs" / "api_demo" / "run.json").exists()
    assert "runs/api_demo 8 finished" in capsys.readouterr().out


def test_import_tribyol_stays_light() -> None:
    """The API names load on first use: importing the package pulls in neither torch nor Lightning."""
    import subprocess

    code = "import sys, tribyol; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_bad_config_is_a_config_error_before_anything_runs(tmp_path: Path) -> None:
    from tribyol.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        tribyol.pretrain(None, {"train.batchsize": 8, "run_dir": str(tmp_path)})
    assert not any(tmp_path.iterdir())
