"""``reproduce.tables``: the grid's records under its rows, as poster-shaped tables."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reproduce.helpers import FakeRunner, tiny
from tribyol.reproduce.grid import expand_grid
from tribyol.reproduce.runner import Reproduction
from tribyol.reproduce.tables import grid_records, tables_markdown


def test_tables_show_rows_by_cell_with_n_and_the_poster(tmp_path: Path) -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0, 1],
                            equal_compute=True, random_init=True))
    runner = FakeRunner()
    repro = Reproduction(grid, tmp_path, runner=runner, jobs=2, echo=lambda m: None)
    assert repro.run(grid.cells) == []  # two cells at a time, random init after its source
    assert len([a for a in runner.calls if a[0] == "pretrain"]) == 6
    assert [a[1] for a in runner.calls[-2:] if "--random-init" in a] == ["linear", "knn"]
    records = grid_records(repro, grid.cells)
    assert {r["method"] for r in records} == {"tribyol", "byol", "byol@equal compute x1.5",
                                              "random-init"}
    assert {r["equal_compute"]["factor"] for r in records if "equal_compute" in r} == {1.5}
    text = tables_markdown(records, grid)
    assert "| BYOL (equal compute x1.5) |" in text and "| Random init |" in text
    assert "x1.5 = the cost of tribyol" in text
    assert "50.50±0.71 (n=2)" in text  # seeds 0 and 1 score 50 and 51
    # the poster's numbers need the poster's datasets; here the digits column has none
    assert "/ –" in text


def test_tables_print_the_paired_difference_of_each_row_from_the_reference(tmp_path: Path) -> None:
    """Issue 20: rows run with the same seeds and carve are compared seed by seed, and the
    tables say the mean difference with its 95 % t-interval beside each row's mean ± std."""
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0, 1, 2]))
    repro = Reproduction(grid, tmp_path, runner=FakeRunner(), echo=lambda m: None)
    assert repro.run(grid.cells) == []
    lines = []
    for line in repro.store.read_text().splitlines():  # BYOL: TriBYOL's score + 1, 2, 3
        record = json.loads(line)
        if record["method"] == "byol":
            record["value"] += 1 + int(record["run_id"][-1])
        lines.append(json.dumps(record))
    repro.store.write_text("\n".join(lines) + "\n")
    text = tables_markdown(grid_records(repro, grid.cells), grid)
    assert "| TriBYOL | 51.00±1.00 (n=3) / – |" in text and "| BYOL | 53.00±2.00 (n=3) / – |" in text
    # differences 1, 2, 3: mean 2, se 1/sqrt(3), t(0.975, 2) = 4.3027; p = 1 - t/sqrt(2 + t^2)
    assert "| Row − TriBYOL | Digits b16 |" in text
    assert "| BYOL | +2.00 [-0.48, +4.48] p 0.07 (n 3) |" in text
