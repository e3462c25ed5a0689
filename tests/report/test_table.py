"""One table: ours beside the poster's, as Markdown and CSV; which poster number a row shows."""

import csv

from tests.report.helpers import write_store
from tribyol.report.tables import build_tables
from tribyol.store import append_result, read_results


def test_tables_put_ours_beside_the_poster(tmp_path):
    store = tmp_path / "r.jsonl"
    write_store(store)
    linear, finetune, transfer = build_tables(read_results(store))
    md = linear.markdown()
    assert "| TriBYOL | 60.00 / 79.09 |" in md  # C10 b32: ours (latest) / poster
    assert "| BYOL | – / 68.67 | 70.00 / 81.47 |" in md
    assert "40.00† / –" in finetune.markdown()  # carved test split is marked
    assert "| TriBYOL (from C10) | – / – | – / – | – / – | 90.00 / – |" in transfer.markdown()
    assert "| TriBYOL | – / 98.74 |" in transfer.markdown()  # the poster's row stays
    rows = list(csv.DictReader(linear.csv().splitlines()))
    tri = next(r for r in rows if r["method"] == "TriBYOL")
    assert float(tri["C10 b32 ours"]) == 60.0 and float(tri["C10 b32 poster"]) == 79.09


def test_a_b32_finetune_row_does_not_carry_the_posters_b128_numbers(tmp_path) -> None:
    store = tmp_path / "r.jsonl"
    base = {"method": "tribyol", "backbone": "convnet", "dataset": "cifar10", "protocol": "finetune",
            "metric": "top1", "seed": 0, "test_split": "test", "pretrain_dataset": "cifar10"}
    append_result(store, {**base, "run_id": "a", "pretrain_batch_size": 32, "label_fraction": 0.01,
                          "value": 40.0})
    append_result(store, {**base, "run_id": "b", "pretrain_batch_size": 128, "label_fraction": 0.01,
                          "value": 50.0})
    finetune = next(t for t in build_tables(read_results(store)) if t.title.startswith("Fine-tuning"))
    col = ("cifar10", 0.01)
    assert finetune.cells("tribyol@b32", col)[1] is None
    assert finetune.cells("tribyol@b128", col)[1] == 56.60  # the poster's TriBYOL C10 1 % cell
