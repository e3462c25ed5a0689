"""Rows are configurations, not method names (issue 20): recorded settings, old grid records
told apart by their arm and folder, runs of one name from two stores, and paired differences."""

import json
from pathlib import Path

from tribyol.report.records import latest
from tribyol.report.tables import build_tables
from tribyol.store import append_result, config_id, read_results

GRIDS = Path(__file__).resolve().parents[2] / "results" / "grids"
BASE = {"backbone": "convnet", "dataset": "cifar10", "pretrain_dataset": "cifar10",
        "metric": "top1", "seed": 0, "test_split": "test", "protocol": "linear",
        "pretrain_batch_size": 32, "pretrain_labels": "none", "method": "tribyol"}


def rows_of(table) -> dict[str, str]:
    """The main table's rows (the paired table below it has rows of the same names)."""
    main = table.markdown().split("\n\n")[1]
    return {line.split(" | ")[0][2:]: line for line in main.splitlines() if line.startswith("| ")}


def settings(extra_views: str = "byol-pairs", lr: float = 0.05) -> dict:
    return {"method": {"name": "tribyol", "target_policy": "shared"},
            "augment": {"extra_views": extra_views}, "optim": {"lr": lr},
            "model": {"backbone": "convnet", "stem": None}, "data": {"dataset": "cifar10"}}


def test_the_seven_arms_of_the_committed_ablation_are_seven_rows():
    records = read_results(GRIDS / "cpu_ablation" / "results.jsonl")
    linear = build_tables(records)[0]
    tribyol = {m: c for m, c in linear.ours.items() if m.partition("@")[0] == "tribyol"}
    assert len(tribyol) == 7  # default (cycle then), 2 target policies, symmetric, views 4, 2 views
    assert all(len(cell.values) == 3 for row in tribyol.values() for cell in row.values())
    rows = rows_of(linear)
    assert rows["TriBYOL"].startswith("| TriBYOL | 44.07±0.67† / 79.09 |")  # the default arm only
    assert rows["TriBYOL (cell third_view-byol-pairs)"].startswith(
        "| TriBYOL (cell third_view-byol-pairs) | 44.60±0.60† ")
    assert "BYOL (3.0ep, cell equal-compute)" in rows
    assert "TriBYOL: cell; BYOL: pretrain epochs, cell" in linear.markdown()


def test_merging_two_grid_stores_keeps_both_runs_of_one_name(tmp_path):
    merged = tmp_path / "all.jsonl"
    merged.write_text("".join((GRIDS / g / "results.jsonl").read_text()
                              for g in ("cpu_ablation", "cpu_methods")))
    records = read_results(merged)
    kept = [r for r in latest(records) if r["run_id"] == "tribyol_cifar10_b32_s0"
            and r["protocol"] == "linear"]
    assert sorted(round(r["value"], 2) for r in kept) == [43.64, 44.16]  # cycle, byol-pairs
    rows = rows_of(build_tables(records)[0])
    # the two defaults (third view cycle, then byol-pairs) are told apart by their grid folder
    assert "| 44.07±0.67† / 79.09 |" in rows["TriBYOL (in cpu_ablation)"]
    assert "| 44.60±0.60† / 79.09 |" in rows["TriBYOL (in cpu_methods)"]


def test_rows_differ_by_every_recorded_setting_and_say_which(tmp_path):
    store = tmp_path / "r.jsonl"
    for seed, (a, b, c) in enumerate([(40.0, 41.0, 50.0), (42.0, 44.0, 51.0)]):
        for value, s in ((a, settings("cycle")), (b, settings("byol-pairs")),
                         (c, settings("byol-pairs", lr=0.1))):
            append_result(store, {**BASE, "run_id": f"r{seed}", "value": value, "pretrain_seed": seed,
                                  "pretrain_settings": s, "config_id": config_id(s, seed)})
    linear = build_tables(read_results(store))[0]
    rows = rows_of(linear)
    assert rows["TriBYOL (extra_views=cycle, lr=0.05)"].startswith(
        "| TriBYOL (extra_views=cycle, lr=0.05) | 41.00±1.41 / 79.09 |")  # seeds 0 and 1 only
    assert "| 42.50±2.12 / 79.09 |" in rows["TriBYOL (extra_views=byol-pairs, lr=0.05)"]
    assert "| 50.50±0.71 / 79.09 |" in rows["TriBYOL (extra_views=byol-pairs, lr=0.1)"]
    assert "TriBYOL: extra_views, lr" in linear.markdown()
    # the same run names from three configurations: none replaced another
    assert len(latest(read_results(store))) == 6
    # paired against the reference row (the first of the fewest qualifiers) over seeds 0, 1:
    # cycle - byol-pairs = -1, -2; lr 0.1 - lr 0.05 = +9, +7 (t = 8, df 1: p = 1 - 2 atan(8) / pi)
    paired = linear.paired()
    assert linear.reference_row() == "tribyol@extra_views=byol-pairs, lr=0.05"
    diff = paired["tribyol@extra_views=cycle, lr=0.05"][("cifar10", 32)]
    assert (diff.n, diff.mean) == (2, -1.5)
    text = linear.markdown()
    assert "| TriBYOL (extra_views=cycle, lr=0.05) | -1.50 [-7.85, +4.85] p 0.20 (n 2) |" in text
    assert "| TriBYOL (extra_views=byol-pairs, lr=0.1) | +8.00 [-4.71, +20.71] p 0.08 (n 2) |" in text


def test_a_record_without_a_recorded_seed_is_not_paired(tmp_path):
    store = tmp_path / "r.jsonl"
    for method, value in (("tribyol", 50.0), ("byol", 40.0)):
        append_result(store, {**BASE, "method": method, "run_id": method, "value": value})
    linear = build_tables(read_results(store))[0]
    assert linear.paired() == {} and "Paired differences" not in linear.markdown()


def test_config_ids_differ_by_settings_and_seed():
    assert config_id(settings(), 0) == config_id(json.loads(json.dumps(settings())), 0)
    assert len({config_id(settings(), 0), config_id(settings(), 1),
                config_id(settings("cycle"), 0)}) == 3
    assert config_id(None, 0) is None


def test_real_runs_of_one_name_from_two_configurations_are_two_rows(tmp_path):
    """End to end: the records of `tribyol eval` carry the run's settings, seed and config id,
    so two runs named alike (two grids) stay apart in the store and in the report."""
    from tests.conftest import tiny_config
    from tribyol.cli import main
    from tribyol.engine import pretrain

    store = tmp_path / "r.jsonl"
    for folder, view in (("a", "cycle"), ("b", "uniform")):
        run = pretrain(tiny_config(tmp_path / folder, ("name", "same"), ("train.max_steps", 1),
                                   ("augment.extra_views", view)))
        assert main(["eval", "knn", str(run), "--dataset", "digits", "--k", "5", "--device", "cpu",
                     "--no-cache", "--limit-train", "100", "--limit-test", "100",
                     "--store", str(store)]) == 0
    records = read_results(store)
    assert [r["run_id"] for r in records] == ["same", "same"]
    assert [r["pretrain_settings"]["augment"]["extra_views"] for r in records] == ["cycle", "uniform"]
    assert [r["pretrain_seed"] for r in records] == [0, 0]
    assert records[0]["config_id"] != records[1]["config_id"] and len(latest(records)) == 2
    knn = next(t for t in build_tables(records) if t.title.startswith("kNN"))
    assert set(knn.ours) == {"tribyol@extra_views=cycle", "tribyol@extra_views=uniform"}


def test_validation_and_test_scores_of_one_configuration_are_two_rows():
    """A select_on: validation grid's scores never share a mean with test scores."""
    s = settings()
    records = [{**BASE, "value": v, "seed": seed, "pretrain_settings": s, "run_id": f"r{seed}",
                "test_split": split}
               for seed, (v, split) in enumerate([(40.0, "test"), (50.0, "validation 0.1 of train "
                                                                   "outside the test carve 0.2")])]
    rows = rows_of(build_tables(records)[0])
    assert {r for r in rows if r.startswith("TriBYOL")} == {"TriBYOL", "TriBYOL (on validation)"}
    assert "40.00" in rows["TriBYOL"] and "50.00" in rows["TriBYOL (on validation)"]


def test_past_three_differing_settings_a_row_names_a_count_and_a_digest():
    from tribyol.report.settings import setting_quals

    def tree(lr: float, wd: float, epochs: int, views: str) -> dict:
        return {"optim": {"lr": lr, "weight_decay": wd}, "train": {"epochs": epochs},
                "augment": {"extra_views": views}}

    group = [{**BASE, "pretrain_settings": tree(0.1, 1e-4, 2, "cycle")},
             {**BASE, "pretrain_settings": tree(0.2, 1e-5, 3, "uniform")},
             {**BASE}]  # an older record: no settings
    quals, keys = setting_quals(group)
    assert keys == ["extra_views", "lr", "weight_decay", "epochs", "settings recorded or not"]
    assert quals[0][:3] == ["extra_views=cycle", "lr=0.1", "weight_decay=0.0001"]
    assert len(quals[0]) == 4 and quals[0][3].startswith("+1 more, cfg ")
    assert quals[0][3] != quals[1][3]  # the digest tells the two configurations apart
    assert quals[2] == ["settings unrecorded"]
