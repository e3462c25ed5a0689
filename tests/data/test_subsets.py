"""The carves a ``select_on: validation`` grid draws (issue 20, item 5): the test carve, the
validation carve and the pre-training subset are pairwise disjoint, stratified and seeded."""

from __future__ import annotations

import pytest
import torch

from tribyol.data.subsets import outside_carve, stratified_sample, validation_carve


def labels(classes: int = 10, per_class: int = 50) -> torch.Tensor:
    # interleaved, so index order is no class order
    return torch.arange(classes * per_class) % classes


def test_test_validation_and_pretraining_images_are_pairwise_disjoint() -> None:
    y = labels()
    test = stratified_sample(y, 0.2, 0)  # tribyol eval's carve
    val = validation_carve(y, test, 0.1, 0)
    pre = outside_carve(y, 30, 0.2, 0, validation_fraction=0.1)
    sets = {"test": set(test.tolist()), "validation": set(val.tolist()), "pretrain": set(pre.tolist())}
    assert [len(s) for s in sets.values()] == [100, 50, 300]
    for a, b in (("test", "validation"), ("test", "pretrain"), ("validation", "pretrain")):
        assert not sets[a] & sets[b], (a, b)
    # stratified: 5 validation images of each class; seeded: the same again, another seed moves it
    assert torch.bincount(y[val]).tolist() == [5] * 10
    assert validation_carve(y, test, 0.1, 0).tolist() == val.tolist()
    assert validation_carve(y, test, 0.1, 1).tolist() != val.tolist()
    # drawn outside the test carve only, the subset takes validation images: the case refused
    assert set(outside_carve(y, 30, 0.2, 0).tolist()) & sets["validation"]


def test_a_validation_carve_too_large_for_the_non_test_images_is_refused() -> None:
    y = labels()
    test = stratified_sample(y, 0.5, 0)
    with pytest.raises(ValueError, match="does not fit"):
        validation_carve(y, test, 0.6, 0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        validation_carve(y, test, 0.0, 0)
