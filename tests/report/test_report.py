import csv
import json

from tribyol.cli import main
from tribyol.report.tables import build_tables, latest, runs_table
from tribyol.store import append_result, read_results


def write_store(path):
    base = {"method": "tribyol", "backbone": "convnet", "dataset": "cifar10",
            "pretrain_dataset": "cifar10", "metric": "top1", "seed": 0, "test_split": "test"}
    append_result(path, {**base, "run_id": "a", "protocol": "linear", "pretrain_batch_size": 32,
                         "value": 50.0})
    append_result(path, {**base, "run_id": "a", "protocol": "linear", "pretrain_batch_size": 32,
                         "value": 60.0})  # a re-run replaces the first
    append_result(path, {**base, "run_id": "b", "protocol": "linear", "pretrain_batch_size": 64,
                         "value": 70.0, "method": "byol"})
    append_result(path, {**base, "run_id": "a", "protocol": "finetune", "label_fraction": 0.01,
                         "pretrain_batch_size": 32, "value": 40.0, "test_split": "carved 0.2"})
    append_result(path, {**base, "run_id": "a", "protocol": "transfer", "dataset": "usps",
                         "value": 90.0})


def test_store_records_have_every_field(tmp_path):
    store = tmp_path / "r.jsonl"
    write_store(store)
    with open(store, "a") as f:
        f.write('{"broken\n')  # a killed writer: skipped, not fatal
    records = read_results(store)
    assert len(records) == 5 and len(latest(records)) == 4
    assert {"run_id", "git_commit", "time", "label_fraction", "params"} <= set(records[0])


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


def test_report_command_writes_tables_and_plot(tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    write_store(store)
    out = tmp_path / "report"
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Linear evaluation by pre-training batch size" in text and "60.00 / 79.09" in text
    assert (out / "linear.csv").exists() and (out / "runs.csv").exists()
    assert (out / "linear_vs_batch.png").stat().st_size > 1000
    assert "60.00 / 79.09" in capsys.readouterr().out
    # filters narrow the records
    assert main(["report", "--store", str(store), "--out", str(out), "--no-plots",
                 "--filter", "method=byol"]) == 0
    assert "60.00" not in (out / "report.md").read_text()


def test_tsne_plot_from_cached_features(tmp_path):
    import torch
    from safetensors.torch import save_file

    from tribyol.report.cli import tsne_plots

    feats = torch.cat([torch.randn(30, 8), torch.randn(30, 8) + 5])
    save_file({"features": feats, "labels": torch.arange(60) // 30}, str(tmp_path / "f.safetensors"))
    record = {"run_id": "a", "protocol": "linear", "dataset": "toy",
              "params": {"features_file": str(tmp_path / "f.safetensors")}}
    (path,) = tsne_plots([record], tmp_path, max_plots=2, points=40)
    assert path.exists() and path.stat().st_size > 1000
    assert json.dumps(record)  # records stay JSON-able


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


def sized_store(path):
    """Linear records of two runs evaluated on different subsets, with their image counts."""
    base = {"backbone": "convnet", "dataset": "cifar10", "pretrain_dataset": "cifar10",
            "metric": "top1", "seed": 0, "test_split": "test", "protocol": "linear"}
    append_result(path, {**base, "run_id": "t32", "method": "tribyol", "pretrain_batch_size": 32,
                         "value": 50.0, "params": {"num_train": 10000, "num_test": 5000}})
    append_result(path, {**base, "run_id": "t64", "method": "tribyol", "pretrain_batch_size": 64,
                         "value": 55.0, "params": {"num_train": 1000, "num_test": 500}})
    append_result(path, {**base, "run_id": "r32", "method": "random-init", "pretrain_batch_size": 32,
                         "value": 30.0, "params": {"num_train": 10000, "num_test": 5000}})
    append_result(path, {**base, "run_id": "b32", "method": "byol", "pretrain_batch_size": 32,
                         "value": 45.0})  # an old record without counts


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


def test_every_method_in_the_batch_plot_has_its_own_colour(tmp_path):
    from matplotlib.colors import to_hex

    from tribyol.report import paper
    from tribyol.report.plots import batch_curves_figure, method_colours

    store = tmp_path / "r.jsonl"
    sized_store(store)
    fig = batch_curves_figure(read_results(store))
    lines = {line.get_label(): to_hex(line.get_color()) for ax in fig.axes for line in ax.lines}
    ours = {k: v for k, v in lines.items() if k.endswith("(ours)")}
    assert set(ours) == {"TriBYOL (ours)", "Random init (ours)", "BYOL (ours)"}
    assert len(set(ours.values())) == 3  # Random init used to share TriBYOL's colour (C10 = C0)
    assert lines["TriBYOL (poster)"] == ours["TriBYOL (ours)"]  # one method, one colour
    extra = [f"method{i}" for i in range(12)]
    colours = method_colours(extra)
    assert set(colours) == set(paper.METHOD_NAMES) | set(extra)
    assert len(set(colours.values())) == len(colours)
    assert colours["tribyol"] == method_colours()["tribyol"]  # stable across reports


def test_tsne_legend_names_the_classes(tmp_path, monkeypatch):
    import torch

    from tribyol.data import TensorImages
    from tribyol.eval.features import FeatureCache, cached_class_names
    from tribyol.report import cli as report_cli
    from tribyol.report import plots
    from tribyol.report.plots import class_scatter

    points = torch.randn(40, 2).numpy()
    labels = torch.arange(40) % 2
    legend = class_scatter(points, labels, class_names=["cat", "dog"]).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog"]
    legend = class_scatter(points, labels).axes[0].get_legend()  # no names: the labels
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1"]

    # the feature cache records the dataset's class names; the report passes them on
    images = TensorImages(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.arange(6) % 2,
                          ["cat", "dog"])
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    _, _, path = FeatureCache(tmp_path).features(
        encoder, images, name="toy", split="test", image_size=4, mean=(0.5,), std=(0.5,),
        device="cpu")
    assert cached_class_names(path) == ["cat", "dog"]
    seen = {}
    monkeypatch.setattr(plots, "plot_tsne", lambda *a, **kw: seen.update(kw) or tmp_path / "x.png")
    record = {"run_id": "a", "protocol": "knn", "dataset": "toy",
              "params": {"features_file": str(path)}}
    report_cli.tsne_plots([record], tmp_path, max_plots=1, points=10)
    assert seen["class_names"] == ["cat", "dog"]


def test_report_out_that_cannot_be_written_is_one_error_line(tmp_path, capsys, monkeypatch):
    import errno
    from pathlib import Path

    store = tmp_path / "r.jsonl"
    write_store(store)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "report"  # a file in the way (tests run as root)
    assert main(["report", "--store", str(store), "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write the report to --out {out} (Not a directory); pick "
                   "another folder with --out\n")

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the report") and "Read-only" in err
    assert "Traceback" not in err
