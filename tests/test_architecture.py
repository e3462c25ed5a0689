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


# Modules that import parts of tribyol inside functions, and why (docs/architecture.md): a new
# one is a deliberate change to this table, not an accident.
IN_FUNCTION_IMPORTS = {
    "cli.py": "each command's machinery (engine, export, demo, data check) when it runs: fast --help",
    "eval/cli.py": "the eval protocols (torch) when a command runs: fast --help",
    "report/cli.py": "tables, plots and cached features when the command runs: fast --help",
    "reproduce/cost.py": "the method registry and dataset presets (torch) for a plan: fast --help",
    "reproduce/data.py": "the pre-training subset and carves (torch) only when a grid runs: fast --help",
    "reproduce/tables.py": "tables and plots only when a grid's tables are written: fast --help",
    "reproduce/equal_memory.py": "the batch finder (torch) only when a grid measures: fast --help",
    "resolve.py": "the registries (torch) after the torch-free config checks",
    "api.py": "the engine (Lightning) on the first pretrain() call",
}


def test_imports_inside_functions_stay_where_they_have_a_reason() -> None:
    import ast

    found: dict[str, int] = {}
    for path in sorted((ROOT / "src" / "tribyol").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("tribyol"):
                        name = path.relative_to(ROOT / "src" / "tribyol").as_posix()
                        found[name] = found.get(name, 0) + 1
    assert set(found) <= set(IN_FUNCTION_IMPORTS), sorted(set(found) - set(IN_FUNCTION_IMPORTS))
    assert sum(found.values()) <= 44, found  # 44: the batch finder under equal_memory (issue 23)


# Issue 21: a newcomer reads a module in one sitting and a function on one screen.
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def test_no_module_or_function_outgrows_its_limit() -> None:
    import ast

    long_modules, long_functions = [], []
    for path in sorted((ROOT / "src" / "tribyol").rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(ROOT / "src" / "tribyol").as_posix()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES):
                long_functions.append(f"{name}:{node.name}")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_ruff_holds_complexity_in_src() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '"C901"' in text and "max-complexity = 10" in text
