"""``channel_stats``: the one rule for per-channel statistics across a channel change."""

from __future__ import annotations

import pytest

from tribyol.channels import LUMA, channel_stats


def test_rgb_to_grayscale_is_the_luma_weighted_sum() -> None:
    assert LUMA == (0.299, 0.587, 0.114)
    # 0.299 * 0.5 + 0.587 * 0.4 + 0.114 * 0.3
    assert channel_stats((0.5, 0.4, 0.3), 1) == pytest.approx((0.4185,), abs=1e-12)


def test_grayscale_to_rgb_repeats_and_matching_counts_pass_through() -> None:
    assert channel_stats((0.2,), 3) == (0.2, 0.2, 0.2)
    assert channel_stats((0.1, 0.2, 0.3), 3) == (0.1, 0.2, 0.3)


def test_other_channel_changes_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot map 2-channel statistics to 3 channels"):
        channel_stats((0.1, 0.2), 3)
