import copy
import csv
import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from tribyol.data import TensorImages
from tribyol.engine import pretrain
from tribyol.engine.module import DataInfo
from tribyol.engine.monitor import METRIC, KNNMonitor, knn_monitor
from tribyol.errors import ConfigError
from tribyol.nets import build_backbone


def weighted_knn_top1(encoder, bank, queries, info, k: int, temperature: float) -> float:
    """kNN top-1 written out independently of tribyol.eval: eval-mode features of the plain
    (resized, normalised) images, cosine similarity, votes weighted by exp(sim / T)."""
    from tribyol.augment import eval_transform

    net = copy.deepcopy(encoder).eval()
    with torch.no_grad():
        def features(data):
            x = eval_transform(data.images, info.image_size, info.mean, info.std)
            return torch.nn.functional.normalize(net(x).float(), dim=1)

        sim, idx = (features(queries) @ features(bank).T).topk(k, dim=1)
        votes = torch.zeros(len(queries), int(bank.labels.max()) + 1)
        votes.scatter_add_(1, bank.labels[idx], (sim / temperature).exp())
    return 100.0 * (votes.argmax(1) == queries.labels).float().mean().item()


class RecomputeKNN(L.Callback):
    """After the monitor (callbacks run in order), recompute its number from the same weights."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        (monitor,) = [c for c in trainer.callbacks if isinstance(c, KNNMonitor)]
        self.values.append(weighted_knn_top1(module.encoder, monitor.bank, monitor.queries,
                                             module.info, monitor.k, monitor.temperature))


def test_monitor_runs_in_a_tiny_pretrain(tiny):
    cfg = tiny(("data.monitor_fraction", 0.25), ("train.knn_every_epochs", 1), ("train.epochs", 2),
               ("train.knn_k", 5))
    recompute = RecomputeKNN()
    run_dir = pretrain(cfg, extra_callbacks=[recompute])
    (metrics,) = run_dir.glob("logs/**/metrics.csv")
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    values = [float(r[METRIC]) for r in rows if r.get(METRIC)]
    assert len(values) == 2  # once per epoch
    # the logged numbers are the kNN top-1 of the current encoder on the held-out images
    assert values == pytest.approx(recompute.values, abs=1e-4)
    # 16 held-out digits, 10 classes: far above chance (10 %); measured 62.5 and 56.25
    assert all(v >= 30.0 for v in values), values
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
    # off by default; half of it set is a config error (tests/test_config.py)
    assert knn_monitor(tiny(), train)[1] == []
    with pytest.raises(ConfigError, match="the online kNN monitor needs both"):
        tiny(("data.monitor_fraction", 0.25))


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


def test_a_run_is_named_by_the_steps_left_after_the_monitor_holds_images_out(tiny):
    """64 digits, a quarter held out: 48 images, 3 batches of 16 an epoch, 6 in 2 epochs, so
    max_steps 7 never ends the run and it is named e2, not s7 (as with the 64 images counted)."""
    cfg = tiny(("data.monitor_fraction", 0.25), ("train.knn_every_epochs", 1),
               ("train.epochs", 2), ("train.max_steps", 7), ("train.batch_size", 16))
    run_dir = pretrain(cfg)
    assert run_dir.name.split("_")[3] == "e2"
    assert json.loads((run_dir / "run.json").read_text())["steps_done"] == 6
