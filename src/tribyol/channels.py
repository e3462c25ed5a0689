"""Per-channel statistics across a channel change: the one rule for pre-training and evaluation.

An image converted from RGB to grayscale is a luma-weighted sum of its channels, so its mean is
the luma-weighted mean (and, as an approximation, its std the weighted std); a grayscale image
repeated to RGB keeps its statistics in every channel.
"""

from __future__ import annotations

# ITU-R BT.601 luma weights, as PIL's RGB -> L and torchvision's rgb_to_grayscale use.
LUMA = (0.299, 0.587, 0.114)


def channel_stats(stats: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """Per-channel mean or std for ``channels`` channels, carried the way the images are."""
    stats = tuple(float(s) for s in stats)
    if len(stats) == channels:
        return stats
    if len(stats) == 1:
        return stats * channels
    if len(stats) == 3 and channels == 1:
        return (sum(w * s for w, s in zip(LUMA, stats, strict=True)),)
    raise ValueError(f"cannot map {len(stats)}-channel statistics to {channels} channels")
