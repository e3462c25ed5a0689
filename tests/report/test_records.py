"""What a record says: the latest of re-runs, the arm and seed an old grid run's name gives."""

from tests.report.helpers import write_store
from tribyol.report.records import grid_run, latest, pretrain_seed
from tribyol.store import read_results


def test_store_records_have_every_field(tmp_path):
    store = tmp_path / "r.jsonl"
    write_store(store)
    with open(store, "a") as f:
        f.write('{"broken\n')  # a killed writer: skipped, not fatal
    records = read_results(store)
    assert len(records) == 5 and len(latest(records)) == 4
    assert {"run_id", "git_commit", "time", "label_fraction", "params"} <= set(records[0])


def test_old_grid_records_give_their_arm_and_seed_from_the_run_name():
    r = {"method": "tribyol", "run_id": "tribyol-third_view-uniform_cifar10_b32_s2"}
    assert grid_run(r) == ("third_view-uniform", 2) and pretrain_seed(r) == 2
    assert grid_run({"method": "tribyol", "run_id": "tribyol_cifar10_b32_s1#tribyol_x"}) == ("", 1)
    assert grid_run({"method": "random-init", "run_id": "tribyol_c_b32_s0+random-init"}) == (None, None)
    assert grid_run({"method": "byol", "run_id": "my-run"}) == (None, None)
    assert pretrain_seed({"pretrain_seed": 5, "run_id": "tribyol_c_b32_s1"}) == 5
