"""Report rows never mix pre-training settings (issue 13): accumulation, devices, batch, labels."""

import csv

from tribyol.cli import main
from tribyol.report.names import row_name
from tribyol.report.rows import method_rows
from tribyol.report.tables import build_tables, runs_table
from tribyol.store import append_result, read_results, saw_labels_of

BASE = {"backbone": "convnet", "dataset": "cifar10", "pretrain_dataset": "cifar10",
        "metric": "top1", "seed": 0, "test_split": "test"}


def rows_of(table) -> dict[str, str]:
    """Markdown row name -> the whole line."""
    return {line.split(" | ")[0][2:]: line for line in table.markdown().splitlines()
            if line.startswith("| ")}


def test_accumulation_and_devices_never_merge_into_the_b32_cell(tmp_path):
    store = tmp_path / "r.jsonl"
    lin = {**BASE, "method": "tribyol", "protocol": "linear", "pretrain_batch_size": 32,
           "pretrain_labels": "none"}
    append_result(store, {**lin, "run_id": "b32", "value": 50.0, "pretrain_accumulate": 1,
                          "pretrain_world_size": 1})
    append_result(store, {**lin, "run_id": "old", "value": 52.0})  # no fields: accumulate 1, world 1
    append_result(store, {**lin, "run_id": "acc", "value": 60.0, "pretrain_accumulate": 4,
                          "pretrain_world_size": 1})
    append_result(store, {**lin, "run_id": "ddp", "value": 70.0, "pretrain_world_size": 4})
    append_result(store, {**lin, "run_id": "both", "value": 80.0, "pretrain_accumulate": 2,
                          "pretrain_world_size": 2})
    records = read_results(store)
    linear = build_tables(records)[0]
    rows = rows_of(linear)
    assert rows["TriBYOL"].startswith("| TriBYOL | 51.00±1.41 / 79.09 |")  # 50 and 52 only
    assert rows["TriBYOL (accum 4)"].startswith("| TriBYOL (accum 4) | 60.00 / 79.09 |")
    assert rows["TriBYOL (4 devices)"].startswith("| TriBYOL (4 devices) | 70.00 / 79.09 |")
    assert rows["TriBYOL (accum 2, 2 devices)"].startswith(
        "| TriBYOL (accum 2, 2 devices) | 80.00 / 79.09 |")
    assert "accum N" in linear.note and "per device" in linear.note
    # the plot keeps them apart too
    from tribyol.report.plots import batch_curves_figure

    fig = batch_curves_figure(records)
    labels = {line.get_label() for ax in fig.axes for line in ax.lines}
    assert {"TriBYOL (ours)", "TriBYOL (accum 4) (ours)", "TriBYOL (4 devices) (ours)"} <= labels
    # and the runs table says it
    runs = list(csv.DictReader(runs_table(records)[1].splitlines()))
    assert [r["pretrain_accumulate"] for r in runs] == ["1", "", "4", "", "2"]
    assert [r["pretrain_world_size"] for r in runs] == ["1", "", "1", "4", "2"]


def test_finetune_and_transfer_rows_keep_pretraining_batches_apart(tmp_path):
    store = tmp_path / "r.jsonl"
    ft = {**BASE, "protocol": "finetune", "label_fraction": 0.01, "pretrain_labels": "none"}
    append_result(store, {**ft, "run_id": "t32", "method": "tribyol", "pretrain_batch_size": 32,
                          "value": 40.0})
    append_result(store, {**ft, "run_id": "t64", "method": "tribyol", "pretrain_batch_size": 64,
                          "value": 50.0})
    # fine-tuning from random weights does not depend on a pre-training batch
    append_result(store, {**ft, "run_id": "t32+random-init", "method": "scratch",
                          "pretrain_batch_size": 32, "value": 30.0})
    tr = {**BASE, "protocol": "transfer", "dataset": "usps", "method": "tribyol",
          "pretrain_labels": "none"}
    append_result(store, {**tr, "run_id": "t32", "pretrain_batch_size": 32, "value": 90.0})
    append_result(store, {**tr, "run_id": "t64", "pretrain_batch_size": 64, "value": 80.0})
    _, finetune, transfer = build_tables(read_results(store))
    rows = rows_of(finetune)
    assert rows["TriBYOL (b32)"].startswith("| TriBYOL (b32) | 40.00 / – |")
    assert rows["TriBYOL (b64)"].startswith("| TriBYOL (b64) | 50.00 / – |")
    assert rows["From scratch"].startswith("| From scratch | 30.00 / 32.29 |")
    assert "±" not in finetune.markdown() and "names its pre-training batch" in finetune.note
    rows = rows_of(transfer)
    assert "| – / – | 90.00 / – |" in rows["TriBYOL (b32) (from C10)"]
    assert "| – / – | 80.00 / – |" in rows["TriBYOL (b64) (from C10)"]
    assert "±" not in transfer.markdown()
    csv_rows = {r["method"]: r for r in csv.DictReader(finetune.csv().splitlines())}
    assert float(csv_rows["TriBYOL (b64)"]["C10 1% ours"]) == 50.0


def test_imagenet_weights_file_under_the_posters_imagenet_row(tmp_path):
    store = tmp_path / "r.jsonl"
    imagenet = {**BASE, "method": "supervised-imagenet", "pretrain_dataset": "imagenet",
                "pretrain_labels": "imagenet labels", "run_id": "imagenet-resnet50"}
    append_result(store, {**imagenet, "protocol": "finetune", "label_fraction": 0.01, "value": 65.0})
    append_result(store, {**imagenet, "protocol": "transfer", "dataset": "usps", "value": 95.0})
    append_result(store, {**imagenet, "protocol": "linear", "value": 85.0})
    # `pretrain --method supervised-imagenet` on cifar10: it saw cifar10's labels too
    run = {**BASE, "method": "supervised-imagenet", "pretrain_batch_size": 32, "run_id": "sup",
           "pretrain_labels": "imagenet labels, cifar10 train labels"}
    append_result(store, {**run, "protocol": "finetune", "label_fraction": 1.0, "value": 90.0})
    append_result(store, {**run, "protocol": "transfer", "dataset": "usps", "value": 93.0})
    linear, finetune, transfer = build_tables(read_results(store))
    rows = rows_of(finetune)
    name = "ImageNet (supervised)"
    assert rows[name].startswith(f"| {name} | 65.00 / 69.90 |")
    assert rows[name].endswith("| imagenet labels |")
    other = f"{name} (b32, saw imagenet labels + cifar10 train labels)"
    assert "| 90.00‡ / – |" in rows[other]  # saw all of cifar10's labels: marked
    assert rows[other].endswith("| imagenet labels, cifar10 train labels |")
    rows = rows_of(transfer)
    assert rows[name].startswith(f"| {name} | – / 98.58 | – / 90.85 | – / 90.77 | 95.00 / 96.56 |")
    assert "| 93.00 / – |" in rows[f"{other} (from C10)"]
    assert "| C10 b? |" in linear.markdown()  # ImageNet weights state no pre-training batch


def test_rows_say_which_labels_their_encoders_saw(tmp_path):
    store = tmp_path / "r.jsonl"
    lin = {**BASE, "protocol": "linear", "pretrain_batch_size": 32}
    append_result(store, {**lin, "run_id": "t", "method": "tribyol", "value": 50.0,
                          "pretrain_labels": "none"})
    append_result(store, {**lin, "run_id": "s", "method": "supervised", "value": 70.0,
                          "pretrain_labels": "cifar10 train labels"})
    append_result(store, {**lin, "run_id": "s", "method": "supervised", "value": 40.0,
                          "pretrain_labels": "cifar10 train labels", "dataset": "stl10"})
    append_result(store, {**lin, "run_id": "b", "method": "byol", "value": 45.0})  # older record
    linear = build_tables(read_results(store))[0]
    rows = rows_of(linear)
    assert rows["Method"].endswith("| Eval images (train / test) | Labels seen in pre-training |")
    assert rows["TriBYOL"].endswith("| none |") and "‡" not in rows["TriBYOL"]
    assert rows["BYOL"].endswith("| ? |")
    assert rows["Supervised"].endswith("| cifar10 train labels |")
    assert "| 70.00‡ / – |" in rows["Supervised"]  # scored on the labels it trained on
    assert "| 40.00 / – |" in rows["Supervised"]  # STL-10: not its labels, no mark
    by_method = {r["method"]: r for r in csv.DictReader(linear.csv().splitlines())}
    assert by_method["Supervised"]["pretrain labels"] == "cifar10 train labels"


def test_saw_labels_of():
    assert saw_labels_of("imagenet labels, cifar10 train labels", "cifar10")
    assert saw_labels_of("digits train labels", "digits")
    assert saw_labels_of("folder train labels", "folder:imgs")
    assert not saw_labels_of("imagenet labels", "cifar10")
    assert not saw_labels_of("cifar10 train labels", "cifar100")
    assert not saw_labels_of("none", "cifar10") and not saw_labels_of(None, "cifar10")


def test_row_names():
    records = [{"method": "byol", "pretrain_batch_size": 32, "pretrain_accumulate": 4},
               {"method": "byol", "pretrain_batch_size": 32, "pretrain_world_size": 2}]
    assert [row_name(r) for r in method_rows(records, with_batch=True)] == [
        "BYOL (b32, accum 4)", "BYOL (b32, 2 devices)"]


def test_runs_of_one_method_with_different_budgets_get_their_own_rows(tmp_path):
    """An equal-compute BYOL (3 epochs) next to a 2-epoch one: two rows, never one mean."""
    store = tmp_path / "r.jsonl"
    base = {"method": "byol", "backbone": "convnet", "dataset": "cifar10", "pretrain_dataset": "cifar10",
            "metric": "top1", "seed": 0, "test_split": "test", "protocol": "linear",
            "pretrain_batch_size": 32}
    append_result(store, {**base, "run_id": "b2", "pretrain_epochs": 2, "value": 50.0})
    append_result(store, {**base, "run_id": "b3", "pretrain_epochs": 3, "value": 54.0})
    append_result(store, {**base, "run_id": "t2", "pretrain_epochs": 2, "value": 52.0,
                          "method": "tribyol"})
    md = build_tables(read_results(store))[0].markdown()
    assert "| BYOL (2ep) | 50.00 / 68.67 |" in md and "| BYOL (3ep) | 54.00 / 68.67 |" in md
    assert "| TriBYOL | 52.00 / 79.09 |" in md  # one budget: the plain method row
    assert "±" not in md
    out = tmp_path / "report"
    assert main(["report", "--store", str(store), "--out", str(out), "--tsne-plots", "0"]) == 0
    assert (out / "linear_vs_batch.png").stat().st_size > 1000
