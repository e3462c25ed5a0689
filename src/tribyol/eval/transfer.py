"""Transfer: one encoder, a linear probe on each target dataset (the poster's third table).

Targets are brought to the encoder's input: 1-channel images are repeated to 3 channels,
3-channel ones turned to 1 by luma, and all resized to the encoder's ``image_size``. A target
whose files are missing becomes a "missing" row that names the path and the remedy; the rest
of the table is still computed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.channels import channel_stats
from tribyol.data import DatasetNotFoundError, get_spec
from tribyol.errors import ConfigError
from tribyol.eval.carve_overlap import check_carve_unseen
from tribyol.eval.data import EvalData, cache_name, check_test_size, load_eval_data
from tribyol.eval.features import FeatureCache
from tribyol.eval.linear import LinearResult, linear_probe
from tribyol.eval.options import NORMS
from tribyol.eval.sources import Source

log = logging.getLogger(__name__)



@dataclass
class TransferRow:
    target: str
    status: str  # ok | missing | refused (e.g. a test set too small) | error
    top1: float | None = None
    message: str = ""
    result: LinearResult | None = None
    data: EvalData | None = None


def normalisation(src: Source, target: str, norm: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``encoder``: the statistics the encoder was trained with; ``target``: the target's own."""
    if norm == "encoder":
        return src.mean, src.std
    spec = get_spec(target)
    return channel_stats(spec.mean, src.in_channels), channel_stats(spec.std, src.in_channels)


def transfer_one(
    src: Source,
    data: EvalData,
    cache: FeatureCache,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    root: str | Path = "data",
    seed: int = 0,
    batch_size: int = 256,
    device: Any = None,
    encoder_hash: str | None = None,
    **probe: Any,
) -> tuple[LinearResult, Path | None]:
    """Linear probe of ``src``'s encoder on one target's data (channels and size adapted)."""
    common = dict(name=cache_name(data, root), image_size=src.image_size, mean=mean, std=std,
                  **src.pixels, in_channels=src.in_channels, batch_size=batch_size, device=device,
                  encoder_hash=encoder_hash)
    train_x, train_y, _ = cache.features(src.encoder, data.train, split="train",
                                         indices=data.train_indices, **common)
    test_split = "test" if data.test is not data.train else "train"
    test_x, test_y, test_file = cache.features(src.encoder, data.test, split=test_split,
                                               indices=data.test_indices, **common)
    result = linear_probe(train_x, train_y, test_x, test_y, seed=seed,
                          num_classes=data.num_classes, **probe)
    return result, test_file


def transfer(
    src: Source,
    targets: Sequence[str],
    cache: FeatureCache,
    *,
    root: str | Path = "data",
    norm: str = "encoder",
    seed: int = 0,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    download: bool = False,
    on_result: Callable[[TransferRow], None] | None = None,
    test_from_train: float | None = None,
    force_small_test: bool = False,
    **kwargs: Any,
) -> list[TransferRow]:
    """One row per target; missing data and failures become rows, not exceptions.

    ``test_from_train`` carves a test set out of train for the targets that have no test split
    (e.g. a folder without ``test/``); targets with one keep it. A test set of fewer than
    ``splits.MIN_TEST_IMAGES`` images is a "refused" row unless ``force_small_test``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    rows = []
    for target in targets:
        try:
            data = load_eval_data(target, root, image_size=src.image_size, channels=src.in_channels,
                                  limit_train=limit_train, limit_test=limit_test, seed=seed,
                                  split_seed=split_seed, download=download,
                                  test_from_train=test_from_train, carve_only_without_test=True)
            check_carve_unseen(src, data, target)
            check_test_size(len(data.test_indices), data.name, force_small_test)
            mean, std = normalisation(src, target, norm)
            result, _ = transfer_one(src, data, cache, mean=mean, std=std, root=root, seed=seed,
                                     **kwargs)
            # again on the images scored: corrupt files are only found when decoded
            check_test_size(result.num_test, data.name, force_small_test,
                            left_out=len(data.test_indices) - result.num_test)
            row = TransferRow(target, "ok", result.top1, result=result, data=data)
        except DatasetNotFoundError as err:
            row = TransferRow(target, "missing", message=str(err))
        except ConfigError as err:
            row = TransferRow(target, "refused", message=str(err))
        except Exception as err:  # one broken target must not lose the rest of the table
            log.exception("transfer to %s failed", target)
            row = TransferRow(target, "error", message=f"{type(err).__name__}: {err}")
        rows.append(row)
        if on_result is not None:
            on_result(row)
    return rows


def format_table(src: Source, rows: Sequence[TransferRow]) -> str:
    """A Markdown table of one source's transfer results."""
    info = src.info
    batch = f" at batch {info.batch_size}" if info.batch_size else ""
    accumulate, world = info.accumulate or 1, info.world_size or 1
    batch += f", accumulating {accumulate}" if accumulate != 1 else ""
    batch += f", on {world} devices" if world != 1 else ""
    labels = info.labels_seen
    lines = [
        f"Transfer (linear) from {src.run_id} ({info.method}, "
        f"{info.backbone}, pre-trained on {info.dataset}{batch}"
        f"{f'; labels seen: {labels}' if labels else ''})",
        "",
        "| Target | Top-1 % | Train / test images | Note |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if row.status == "ok" and row.result is not None:
            r = row.result
            lines.append(f"| {row.target} | {row.top1:.2f} | {r.num_train} / {r.num_test} | "
                         f"wd {r.weight_decay:g} |")
        else:
            lines.append(f"| {row.target} | {row.status} | – | {row.message.replace('|', '/')} |")
    return "\n".join(lines)
