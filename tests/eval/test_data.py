"""The data an evaluation scores (``tribyol.eval.data``): fine-tuning's label subsets."""

import pytest
import torch

from tribyol.data.sampling import label_subset
from tribyol.eval.data import labelled_subset


def test_labelled_subset_draws_from_the_pool_only_and_is_kept(tmp_path) -> None:
    """Fine-tuning's label subset: only training-pool images, stratified, the same file reused."""
    from types import SimpleNamespace

    from tribyol.data import TensorImages

    labels = torch.arange(100) % 4
    pool = torch.arange(0, 100, 2)  # every other image is in the pool (the rest: test, carved)
    train = TensorImages(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), labels)
    data = SimpleNamespace(train=train, train_indices=pool,
                           test_split="carved 0.5 of train (seed 0)", name="toy")
    subset, path = labelled_subset(data, 0.2, 0, tmp_path)
    assert set(subset.tolist()) <= set(pool.tolist()) and len(subset) == 10
    assert sorted((labels[subset]).tolist()) == [0] * 5 + [2] * 5  # the pool holds classes 0 and 2
    again, same_path = labelled_subset(data, 0.2, 0, tmp_path)
    assert same_path == path and path.exists() and torch.equal(again, subset)
    everything, none = labelled_subset(data, 1.0, 0, tmp_path)
    assert none is None and torch.equal(everything, pool)


def test_another_carve_of_the_same_size_never_reuses_a_subset_with_its_test_images(tmp_path):
    """Two test carves with equally large training pools used to share one index file, so
    fine-tuning on the second carve trained on some of its test images."""
    from types import SimpleNamespace

    from tribyol.data import TensorImages
    from tribyol.errors import ConfigError

    labels = torch.arange(100) % 4
    train = TensorImages(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), labels)

    def carve(pool):
        return SimpleNamespace(train=train, train_indices=pool, test_split="carved", name="toy")

    first, first_path = labelled_subset(carve(torch.arange(0, 100, 2)), 0.2, 0, tmp_path)
    second_pool = torch.arange(1, 100, 2)  # the first carve's pool is this carve's test set
    second, second_path = labelled_subset(carve(second_pool), 0.2, 0, tmp_path)
    assert second_path != first_path
    assert set(second.tolist()) <= set(second_pool.tolist())
    # and an index file made for another pool is refused, not used
    pool_labels = torch.full((100,), -1)
    pool_labels[second_pool] = labels[second_pool]
    with pytest.raises(ConfigError, match="10 of its 10 images are outside this training pool"):
        label_subset(pool_labels, 0.2, 0, first_path)
