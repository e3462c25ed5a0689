"""The layers contract (pyproject.toml, docs/architecture.md): imports flow downward only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_the_layers_contract_is_kept() -> None:
    done = lint()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_the_contract_would_catch_an_upward_import(tmp_path: Path) -> None:
    """The same tool on the layers upside down must fail: the check is not vacuous."""
    text = (ROOT / "pyproject.toml").read_text()
    start = text.index("[tool.importlinter]")
    section = text[start:]
    begin = section.index("layers = [") + len("layers = [")
    body = section[begin: section.index("]\n", begin)]
    layers = [line.strip() for line in body.strip().splitlines() if line.strip()]
    flipped = section.replace(body, "\n  " + "\n  ".join(reversed(layers)) + "\n")
    (tmp_path / "contract.toml").write_text(flipped)
    done = lint("--config", str(tmp_path / "contract.toml"))
    assert done.returncode != 0 and "BROKEN" in done.stdout
