import csv
from types import SimpleNamespace

import torch

from tribyol.data import TensorImages
from tribyol.engine import pretrain
from tribyol.engine.module import DataInfo
from tribyol.engine.monitor import METRIC, KNNMonitor, knn_monitor
from tribyol.nets import build_backbone


def test_monitor_runs_in_a_tiny_pretrain(tiny):
    cfg = tiny(("data.monitor_fraction", 0.25), ("train.knn_every_epochs", 1), ("train.epochs", 2),
               ("train.knn_k", 5))
    run_dir = pretrain(cfg)
    (metrics,) = run_dir.glob("logs/**/metrics.csv")
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    values = [float(r[METRIC]) for r in rows if r.get(METRIC)]
    assert len(values) == 2  # once per epoch
    assert all(0.0 <= v <= 100.0 for v in values)
    assert any(r.get("train/z_std") for r in rows) and any(r.get("train/probe_acc") for r in rows)


def test_held_out_images_leave_the_training_set(tiny):
    cfg = tiny(("data.monitor_fraction", 0.25), ("train.knn_every_epochs", 1))
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 4, 4).contiguous()
    labels = torch.cat([torch.arange(40)[:32] % 4, torch.full((8,), -1)])
    train, callbacks = knn_monitor(cfg, TensorImages(images, labels), max_bank=10)
    (monitor,) = callbacks
    assert len(monitor.queries) == 8 and len(train) == 32  # 25 % of the 32 labelled images
    assert (monitor.queries.labels >= 0).all() and len(monitor.bank) == 10
    ids = set(train.images[:, 0, 0, 0].tolist())
    assert not ids & set(monitor.queries.images[:, 0, 0, 0].tolist())
    assert set(monitor.bank.images[:, 0, 0, 0].tolist()) <= ids
    # off unless both settings are given
    assert knn_monitor(tiny(("data.monitor_fraction", 0.25)), train)[1] == []


def test_monitor_restores_training_mode_and_logs():
    encoder = build_backbone("convnet", 1, 8, width=4).train()
    g = torch.Generator().manual_seed(0)
    data = TensorImages(torch.randint(0, 255, (20, 1, 8, 8), generator=g, dtype=torch.uint8),
                        torch.arange(20) % 2)
    logged = {}
    module = SimpleNamespace(encoder=encoder, device=torch.device("cpu"),
                             info=DataInfo(1, 8, 2, 20, (0.5,), (0.5,)),
                             log=lambda k, v: logged.__setitem__(k, v))
    monitor = KNNMonitor(data, data, every_epochs=2, k=1)
    monitor.on_train_epoch_end(SimpleNamespace(current_epoch=0), module)
    assert logged == {}  # not an epoch to check
    monitor.on_train_epoch_end(SimpleNamespace(current_epoch=1), module)
    assert encoder.training
    assert logged[METRIC] == 100.0  # queries are the bank itself: the nearest is each one
