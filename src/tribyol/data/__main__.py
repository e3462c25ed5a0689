"""``python -m tribyol.data split SRC DEST [--test-fraction F] [--seed S]``: a seeded, stratified
train/test split of an image folder as ``DEST/{train,test}/<class>/`` symlinks + ``split.json``;
``python -m tribyol.data ucmerced-split DIR [OUT.json]``: the UC Merced preset's split manifest."""

from __future__ import annotations

import sys

from tribyol.data import folder_split, ucmerced
from tribyol.errors import USER_ERRORS

COMMANDS = {"split": folder_split.main, "ucmerced-split": ucmerced.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except USER_ERRORS as err:  # a missing or wrong folder: one line, as the tribyol CLI does
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
