"""``finetune()`` itself: it trains on the labelled subset only, and scores in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from tribyol.data import TensorImages
from tribyol.eval.finetune import finetune
from tribyol.eval.options import FinetuneOptions


class Recording(TensorImages):
    """Remembers every index it served."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.served: set[int] = set()

    def __getitem__(self, index):
        self.served.update(torch.as_tensor(index).flatten().tolist())
        return super().__getitem__(index)


class ModeSpy(nn.Module):
    """A tiny encoder with BatchNorm that records whether each forward ran in training mode."""

    out_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.net(x)


def data(n: int, seed: int) -> Recording:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 40, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    images[labels == 1, :, 2:6, 2:6] = 250  # class 1: a bright square
    return Recording(images, labels)


def test_trains_on_the_subset_only_and_tests_in_eval_mode() -> None:
    train, test = data(60, 0), data(40, 1)
    subset = torch.tensor([0, 1, 2, 3, 10, 11, 20, 21, 30, 31])
    test_indices = torch.arange(0, 40, 2)  # half the test set
    encoder = ModeSpy()
    result = finetune(encoder, train, subset, test, test_indices, num_classes=2, image_size=8,
                      mean=(0.5,), std=(0.5,),
                      options=FinetuneOptions(epochs=3, batch_size=4, augment="none"),
                      device="cpu")
    assert train.served == set(subset.tolist())  # never an image outside the labelled subset
    assert test.served == set(test_indices.tolist())
    steps = result.steps
    assert all(encoder.modes[:steps]) and not any(encoder.modes[steps:])  # train, then eval
    assert len(encoder.modes) > steps
    assert result.num_train == 10 and result.num_test == 20
    assert result.top1 >= 90.0  # a bright square is easy: the trained head must find it
