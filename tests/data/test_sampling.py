"""Seeded, stratified samples (``tribyol.data.sampling``): sizes and balance, seeds, index
files, and the carves a ``select_on: validation`` grid draws (issue 20, item 5): the test carve,
the validation carve and the pre-training subset are pairwise disjoint, stratified and seeded."""

from __future__ import annotations

import random

import pytest
import torch

from tribyol.data.sampling import (
    carve_from_train,
    label_subset,
    outside_carve,
    stratified_group_split,
    stratified_sample,
    stratified_split,
    validation_carve,
)


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


def unbalanced_labels():
    return torch.cat([torch.full((n,), c) for c, n in enumerate([500, 300, 200])])


def test_fraction_subset_sizes_and_balance():
    labels = unbalanced_labels()
    for fraction, expected in ((0.01, [5, 3, 2]), (0.1, [50, 30, 20])):
        idx = stratified_sample(labels, fraction, seed=0)
        assert len(idx) == round(fraction * 1000)
        assert torch.bincount(labels[idx], minlength=3).tolist() == expected
        assert len(idx.unique()) == len(idx)


def test_every_class_gets_one_and_unlabelled_never_picked():
    labels = torch.cat([torch.zeros(1000), torch.ones(5), torch.full((50,), -1)]).long()
    idx = stratified_sample(labels, 0.01, seed=0)
    assert (labels[idx] >= 0).all()
    assert torch.bincount(labels[idx]).tolist() == [10, 1]


def test_same_seed_same_subset_other_seed_differs(tmp_path):
    labels = unbalanced_labels()
    a = stratified_sample(labels, 0.1, seed=7)
    assert torch.equal(a, stratified_sample(labels, 0.1, seed=7))
    assert not torch.equal(a, stratified_sample(labels, 0.1, seed=8))
    rest, held = stratified_split(labels, 0.2, seed=1)
    assert len(rest) + len(held) == 1000 and not set(rest.tolist()) & set(held.tolist())


def test_label_subset_index_file_is_reused(tmp_path):
    labels = unbalanced_labels()
    path = tmp_path / "splits" / "toy_0.1_seed0.json"
    first = label_subset(labels, 0.1, seed=0, index_file=path)
    assert path.exists()
    # the file wins, even if asked with another seed: every method sees the same images
    assert torch.equal(label_subset(labels, 0.1, seed=99, index_file=path), first)
    assert len(label_subset(labels, 1.0, seed=0)) == 1000


def test_carve_from_train_is_the_test_carve_or_the_validation_carve_outside_it() -> None:
    y = labels(5, 40)
    rest, held = stratified_split(y, 0.2, seed=3)
    train, scored = carve_from_train(y, 0.2, 3)
    assert torch.equal(train, rest) and torch.equal(scored, held)
    train, val = carve_from_train(y, 0.2, 3, validation_fraction=0.1)
    assert torch.equal(val, validation_carve(y, held, 0.1, 3)) and len(val) == 20
    parts = [set(train.tolist()), set(val.tolist()), set(held.tolist())]
    assert sum(map(len, parts)) == len(y) and len(set().union(*parts)) == len(y)  # a partition


def test_split_ignores_listing_order_and_other_classes() -> None:
    rng = random.Random(0)
    names = [f"c{c}/f{k:02d}.jpg" for c in range(3) for k in range(50)]
    labels = [c for c in range(3) for _ in range(50)]
    train, test = stratified_group_split(names, labels, 0.2, seed=5, classes=["c0", "c1", "c2"])
    order = list(range(len(names)))
    rng.shuffle(order)
    t2, s2 = stratified_group_split([names[i] for i in order], [labels[i] for i in order], 0.2,
                                    seed=5, classes=["c0", "c1", "c2"])
    assert {names[i] for i in test} == {names[order[i]] for i in s2}
    # dropping class c0 leaves c1's and c2's split unchanged
    _, s3 = stratified_group_split(names[50:], [x - 1 for x in labels[50:]], 0.2, seed=5,
                                   classes=["c1", "c2"])
    assert {names[50 + i] for i in s3} == {names[i] for i in test if labels[i] > 0}
    assert len(test) == 30 and len(train) == 120


def test_groups_are_kept_whole_and_the_quota_stays_exact() -> None:
    names = [f"a/{k:02d}" for k in range(10)]
    groups = [[0, 1, 2], [3, 4], [4, 5]]  # overlapping groups merge into {3, 4, 5}
    for seed in range(20):
        train, test = stratified_group_split(names, [0] * 10, 0.3, seed, groups)
        assert len(test) == 3
        for g in ([0, 1, 2], [3, 4, 5]):
            assert set(g) <= set(test) or set(g) <= set(train), (seed, g, test)
