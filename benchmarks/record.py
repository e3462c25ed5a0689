"""A benchmark's result as JSON, with the command that made it and the commit it ran at."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def write_result(result: dict[str, Any], out: str | Path | None,
                 argv: list[str] | None = None) -> None:
    """Print ``result`` (with ``command`` and ``commit`` first) and write it to ``out``."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    command = " ".join([Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)])
    text = json.dumps({"command": f"python {command}", "commit": commit, **result}, indent=1)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
