"""Online kNN monitor: kNN top-1 of the current encoder on a held-out labelled split.

``knn_monitor(cfg, dataset)`` carves a seeded, stratified ``data.monitor_fraction`` of the
labelled pre-training images out of the training set (they are never trained on) and returns
the callback that, every ``train.knn_every_epochs`` epochs, classifies them by weighted kNN
(k = ``train.knn_k``) against features of the remaining labelled training images. Both sets are
bounded, so the monitor costs a few seconds at most; it runs without gradients in eval mode and
restores training mode afterwards. The other monitors, the std and effective rank of normalised
projections (``train/z_std``, ``train/z_rank``; a collapse warning) and the online linear probe
(``train/probe_acc``), live in the module.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from tribyol.config import RunConfig
from tribyol.data import TensorImages
from tribyol.data.sampling import stratified_sample, stratified_split
from tribyol.eval.features import extract_features
from tribyol.eval.knn import knn_accuracy
from tribyol.eval.options import KnnOptions

log = logging.getLogger(__name__)

MAX_BANK = 5000  # labelled training images whose features form the kNN memory bank
MAX_QUERIES = 1000  # held-out images classified at each check
METRIC = "monitor/knn_top1"


class KNNMonitor(L.Callback):
    """Logs ``monitor/knn_top1`` (percent) every ``every_epochs`` epochs."""

    def __init__(
        self,
        bank: TensorImages,
        queries: TensorImages,
        every_epochs: int,
        k: int = 20,
        temperature: float = KnnOptions.temperature,
        batch_size: int = 256,
    ) -> None:
        self.bank, self.queries = bank, queries
        self.every_epochs, self.k, self.temperature = every_epochs, k, temperature
        self.batch_size = batch_size
        self.history: list[tuple[int, float]] = []  # (epoch, top-1)

    @torch.no_grad()
    def evaluate(self, module: Any) -> float:
        info = module.info
        common = dict(image_size=info.image_size, mean=info.mean, std=info.std,
                      scale=info.scale, value_range=info.value_range,
                      batch_size=self.batch_size, device=module.device)
        # extract_features switches the encoder to eval mode and restores its mode afterwards
        bank_x, bank_y = extract_features(module.encoder, self.bank, **common)
        query_x, query_y = extract_features(module.encoder, self.queries, **common)
        return knn_accuracy(bank_x, bank_y, query_x, query_y, self.k, self.temperature)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.every_epochs <= 0 or (epoch + 1) % self.every_epochs:
            return
        top1 = self.evaluate(module)
        self.history.append((epoch, top1))
        module.log(METRIC, top1)
        log.info("epoch %d: online kNN top-1 %.2f%% (%d queries, bank of %d)",
                 epoch, top1, len(self.queries), len(self.bank))


def knn_monitor(
    cfg: RunConfig,
    dataset: Any,
    max_bank: int = MAX_BANK,
    max_queries: int = MAX_QUERIES,
) -> tuple[Any, list[L.Callback]]:
    """``(training set without the held-out images, [KNNMonitor])``, or ``(dataset, [])`` if off."""
    fraction, every = cfg.data.monitor_fraction, cfg.train.knn_every_epochs
    if fraction <= 0 or every <= 0:  # off (the config refuses one without the other)
        return dataset, []
    if not isinstance(dataset, TensorImages):
        log.warning("kNN monitor off: it needs an in-memory dataset, not %s", type(dataset).__name__)
        return dataset, []
    labels = dataset.labels.cpu()
    if int((labels >= 0).sum()) < 4:
        log.warning("kNN monitor off: fewer than 4 labelled images")
        return dataset, []
    seed = cfg.train.seed
    rest, held = stratified_split(labels, fraction, seed)  # unlabelled images always stay in rest
    labelled_rest = rest[labels[rest] >= 0]
    queries = held[stratified_sample(labels[held], min(max_queries, len(held)), seed)]
    bank = labelled_rest[stratified_sample(labels[labelled_rest], min(max_bank, len(labelled_rest)), seed)]
    cpu = dataset.to("cpu")  # the bank and queries stay on CPU; batches move at each check
    callback = KNNMonitor(cpu.subset(bank), cpu.subset(queries), every, cfg.train.knn_k)
    log.info("kNN monitor: %d images held out (%d queries), bank of %d, every %d epochs",
             len(held), len(queries), len(bank), every)
    return dataset.subset(rest.to(dataset.images.device)), [callback]
