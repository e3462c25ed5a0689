"""``reproduce.data``: a validation grid's subset and manifest, so it never scores the test carve."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reproduce.helpers import in_process, tiny, validation_spec
from tribyol.reproduce.data import prepare_data
from tribyol.reproduce.grid import expand_grid
from tribyol.reproduce.runner import Reproduction
from tribyol.reproduce.scoring import VALIDATION_MANIFEST
from tribyol.reproduce.tables import grid_records, tables_markdown


def test_a_validation_grid_never_scores_the_test_carve(tmp_path: Path) -> None:
    from tests.helpers import random_png_folder

    root = random_png_folder(tmp_path / "toy")
    grid = expand_grid(validation_spec(root))
    out = tmp_path / "out"
    out.mkdir()
    prepare_data(grid.spec, log=lambda _: None, out=out)
    made = json.loads((tmp_path / "toy-pretrain6-val0.1" / "subset.json").read_text())
    assert made["validation_fraction"] == 0.1  # the subset lies outside both carves
    manifest = json.loads((out / VALIDATION_MANIFEST).read_text())
    assert manifest["images"] == 10 and set(manifest["per_class"].values()) == {1}
    repro = Reproduction(grid, out, runner=in_process, echo=lambda m: None)
    assert repro.run(grid.cells) == []
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["protocol"] for r in records) == ["knn", "linear"]
    for r in records:  # scored on the validation carve (10 images), named by its digest
        assert r["test_split"] == ("validation 0.1 of train outside the test carve 0.2 (split "
                                   f"seed 0, sha256 {manifest['sha256'][:12]})")
        assert r["params"]["num_test"] == 10
    text = tables_markdown(grid_records(repro, grid.cells), grid)
    assert "**Scored on: the validation carve** (`select_on: validation`)" in text
    plain = expand_grid(tiny(seeds=[0]))
    assert "(`select_on: test`)" in tables_markdown([], plain)
