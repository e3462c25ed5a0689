"""The report's tables and its all-runs table: the images each number was evaluated on."""

import csv

from tests.report.helpers import sized_store
from tribyol.report.tables import build_tables, runs_table
from tribyol.store import read_results


def test_tables_show_the_eval_image_counts(tmp_path):
    store = tmp_path / "r.jsonl"
    sized_store(store)
    records = read_results(store)
    linear = build_tables(records)[0]
    # the last column is the labels seen in pre-training (unknown: ?); the one before, the counts
    rows = {line.split(" | ")[0]: line.rpartition(" | ")[0] + " |"
            for line in linear.markdown().splitlines()}
    assert rows["| Method"].endswith(" | STL b128 | Eval images (train / test) |")
    assert rows["| Random init"].endswith(" | 10000 / 5000 |")
    # one row, two subsets: named per column
    assert rows["| TriBYOL"].endswith(" | C10 b32: 10000 / 5000; C10 b64: 1000 / 500 |")
    assert rows["| BYOL"].endswith(" | ? / ? |")  # an old record without counts
    assert rows["| SimSiam"].endswith(" | – / 71.78 | – |")  # poster only: no counts
    tri = next(r for r in csv.DictReader(linear.csv().splitlines()) if r["method"] == "TriBYOL")
    assert (tri["C10 b64 ours num_train"], tri["C10 b64 ours num_test"]) == ("1000", "500")
    runs_md, runs_csv = runs_table(records)
    assert "num_train | num_test" in runs_md
    rows = {r["run_id"]: r for r in csv.DictReader(runs_csv.splitlines())}
    assert (rows["t64"]["num_train"], rows["t64"]["num_test"]) == ("1000", "500")
    assert rows["b32"]["num_train"] == ""
