"""Small results stores the report tests share."""

from tribyol.store import append_result


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
