"""Augmentation: batched augmentation ops and the multi-view pipeline."""

from tribyol.augment.pipeline import MultiViewAugment, eval_transform

__all__ = ["MultiViewAugment", "eval_transform"]
