"""The engine uses Lightning's public surface only: no private attributes that a Lightning
release may rename (the log-step rule and the loader position are derived by us)."""

from __future__ import annotations

import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "src" / "tribyol" / "engine"
PRIVATE = re.compile(r"trainer\._[a-z]|self\._trainer\b|batch_progress|_logger_connector|\.fit_loop\b")


def test_no_private_lightning_attributes_in_the_engine() -> None:
    found = [f"{path.name}:{n}: {line.strip()}"
             for path in sorted(ENGINE.glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if PRIVATE.search(line.split("#")[0])]
    assert not found, found
    assert PRIVATE.search("connector = self.trainer._logger_connector")  # the pattern bites
