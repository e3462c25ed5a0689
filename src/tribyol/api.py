"""The Python API: what the CLI does, as functions for notebooks and scripts (docs/api.md).

- ``pretrain(config, overrides) -> Run``: the same route as ``tribyol pretrain``.
- ``load_encoder(source)``: a run directory, ``.ckpt`` or exported ``.safetensors`` -> encoder.
- ``evaluate(source, protocol, dataset)``: a linear probe or kNN top-1 on a test split.
- ``build_method(name, backbone)``: a method as a plain ``nn.Module`` for your own loop: views
  in, ``StepOutput`` out, ``after_optimizer_step`` for the EMA.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tribyol.checkpoints import load_encoder
from tribyol.config import ModelConfig, RunConfig
from tribyol.config.fields import api_wording
from tribyol.errors import ConfigError
from tribyol.eval.carve_overlap import check_carve_unseen
from tribyol.eval.cli import check_dataset, check_device
from tribyol.eval.data import load_eval_data
from tribyol.eval.features import extract_features
from tribyol.eval.knn import knn_accuracy
from tribyol.eval.linear import linear_probe
from tribyol.eval.options import DatasetOptions, EvalOptions, KnnOptions, LinearOptions
from tribyol.eval.sources import load_source
from tribyol.methods import Method, MethodContext, resolve_options
from tribyol.resolve import load_config

__all__ = ["Run", "build_method", "evaluate", "load_encoder", "pretrain"]

# Errors raised through these functions name their arguments and config keys, not the CLI's
# flags (tribyol.config.fields.api_wording); a flag missing here becomes its argument's name.
PRETRAIN_NAMES = {"--data-root": "data.root", "--download": "data.download=True",
                  "--resume": "resume=True", "--overwrite": "overwrite=True", "--name": "name",
                  "--runs-root": "runs_root", "--accelerator": "train.accelerator",
                  "--devices": "train.devices", "--strategy": "train.strategy",
                  "--batch-size": "train.batch_size", "--limit": "data.limit",
                  "--weights": "method.weights"}
EVALUATE_NAMES = {"--download": "download=True"}


@dataclass(frozen=True)
class Run:
    """A finished (or stopped) pre-training run: its directory and what it recorded."""

    directory: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))  # Run("runs/x") works too

    @property
    def record(self) -> dict[str, Any]:
        """``run.json``: status, steps and epochs done, batch, accumulation, world size, ..."""
        return json.loads((self.directory / "run.json").read_text())

    @property
    def steps_done(self) -> int:
        return int(self.record["steps_done"])

    @property
    def config(self) -> RunConfig:
        return load_config(self.directory / "config.yaml")

    def encoder(self) -> tuple[nn.Module, dict[str, str]]:
        """The trained encoder and its metadata (as ``load_encoder(run.directory)``)."""
        return load_encoder(self.directory)


@api_wording(PRETRAIN_NAMES)
def pretrain(
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Run:
    """Pre-train as ``tribyol pretrain`` does and return the run.

    ``config``: a ``RunConfig``, a YAML path, a nested dict, or None (the defaults);
    ``overrides``: dotted keys, e.g. ``{"method.name": "byol", "train.max_steps": 10}`` or
    ``["optim.lr=0.1"]``. Bad values raise ``tribyol.errors.ConfigError`` before anything runs.
    """
    from tribyol.engine import pretrain as run_pretraining

    cfg = load_config(config, overrides)  # a RunConfig, a mapping or one "key=value" as well
    return Run(run_pretraining(cfg, resume=resume, overwrite=overwrite))


@api_wording(EVALUATE_NAMES)
def evaluate(
    source: str | Path,
    protocol: str = "linear",
    dataset: str | None = DatasetOptions.dataset,
    *,
    data_root: str | Path = EvalOptions.data_root,
    test_from_train: float | None = DatasetOptions.test_from_train,
    limit_train: int | None = EvalOptions.limit_train,
    limit_test: int | None = EvalOptions.limit_test,
    seed: int = EvalOptions.seed,
    split_seed: int = EvalOptions.split_seed,
    k: int = KnnOptions.k,
    temperature: float = KnnOptions.temperature,
    device: str | None = EvalOptions.device,
    download: bool = EvalOptions.download,
) -> float:
    """Top-1 (%) of the ``source`` encoder on ``dataset``'s test split (default: the dataset it
    was pre-trained on): ``protocol`` "linear" (L2 penalty picked on a validation split) or
    "knn" (weighted, cosine). Nothing is appended to the results store; use the CLI for that.

    The options are those of ``tribyol eval`` (``tribyol.eval.options``: their defaults and
    checks): a bad value (``k=0``, ``temperature=0``, ``device="gpu"``, ...) raises
    ``tribyol.errors.ConfigError`` naming the option, before the encoder or any data is loaded.
    """
    if protocol not in ("linear", "knn"):
        raise ConfigError(f"protocol must be 'linear' or 'knn', got {protocol!r}")
    opts = EvalOptions(data_root=str(data_root), limit_train=limit_train, limit_test=limit_test,
                       seed=seed, split_seed=split_seed, device=device)
    where = DatasetOptions(dataset=dataset, test_from_train=test_from_train)
    knn, linear = KnnOptions(k=k, temperature=temperature), LinearOptions()
    check_device(opts.device)
    check_dataset(where.dataset, "dataset")
    src = load_source(source, seed=opts.seed)
    name = where.dataset or src.meta.get("dataset")
    if name is None:
        raise ConfigError(f"{source} does not say which dataset it was pre-trained on; pass dataset=")
    check_dataset(name, "dataset")
    data = load_eval_data(name, opts.data_root, image_size=src.image_size, channels=src.in_channels,
                          test_from_train=where.test_from_train, limit_train=opts.limit_train,
                          limit_test=opts.limit_test, seed=opts.seed, split_seed=opts.split_seed,
                          download=download)
    check_carve_unseen(src, data, name)
    common = dict(image_size=src.image_size, mean=src.mean, std=src.std, **src.pixels,
                  batch_size=opts.eval_batch_size, device=opts.device, in_channels=src.in_channels)
    train_x, train_y = extract_features(src.encoder, data.train, indices=data.train_indices, **common)
    test_x, test_y = extract_features(src.encoder, data.test, indices=data.test_indices, **common)
    if protocol == "knn":
        return knn_accuracy(train_x, train_y, test_x, test_y, knn.k, knn.temperature)
    return linear_probe(train_x, train_y, test_x, test_y, val_fraction=linear.val_fraction,
                        seed=opts.seed, weight_decays=linear.weight_decays,
                        max_iter=linear.max_iter, num_classes=data.num_classes).top1


@api_wording()
def build_method(
    name: str,
    backbone: nn.Module,
    *,
    hidden_dim: int = ModelConfig.hidden_dim,
    proj_dim: int = ModelConfig.proj_dim,
    image_size: int = 32,
    channels: int = 3,
    num_classes: int = 10,
    num_train_images: int = 0,
    backbone_name: str = "",
    **options: Any,
) -> Method:
    """A registered method around ``backbone`` (anything with an ``out_dim``), with its options
    validated as the config would (``tau=0.99``, ``num_views=4``, ...).

    ``hidden_dim`` / ``proj_dim``: the MLP heads (default: ``model.hidden_dim`` /
    ``model.proj_dim``'s). ``backbone_name``: the registry name ``backbone`` was built from
    (``build_backbone``'s, e.g. "resnet18"); supervised-imagenet picks its ImageNet weights by
    it. "" (unknown): it guesses the architecture from the backbone's layout."""
    cls, opts = resolve_options({"name": name, **options})
    ctx = MethodContext(backbone=backbone, hidden_dim=hidden_dim, proj_dim=proj_dim,
                        num_classes=num_classes, num_train_images=num_train_images,
                        image_size=image_size, channels=channels, backbone_name=backbone_name)
    return cls(ctx, opts)
