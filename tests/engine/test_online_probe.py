"""The online probe reads the encoder's features without training it (docs/evaluation.md)."""

from __future__ import annotations

import pytest
import torch

from tribyol.config import to_dict
from tribyol.engine.module import DataInfo, PretrainModule

INFO = DataInfo(channels=1, image_size=8, num_classes=10, num_train_images=64,
                mean=(0.5,), std=(0.5,))
SELF_SUPERVISED = ["byol", "tribyol", "cross", "simsiam", "simclr", "pirl-jigsaw", "pirl-rotation"]


@pytest.mark.parametrize("name", SELF_SUPERVISED)
def test_online_probe_sends_no_gradient_to_the_encoder(tiny, name):
    module = PretrainModule(to_dict(tiny(("method.name", name))), vars(INFO))
    assert module.probe is not None
    probe_losses = []
    probe_loss = module._probe_loss

    def keep(*args):  # the step's probe loss, kept to take its gradient
        probe_losses.append(probe_loss(*args))
        return probe_losses[-1]

    module._probe_loss = keep
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 8, 8, generator=g)
    labels = torch.arange(16) % 10
    module.training_step((images, labels, torch.arange(16)), 0)
    (probe,) = probe_losses
    assert probe is not None and probe.requires_grad
    # no weight of the method (encoder, projector, predictor, ...) gets any of its gradient
    method = [p for p in module.method.parameters() if p.requires_grad]
    assert all(g is None for g in torch.autograd.grad(probe, method, allow_unused=True,
                                                      retain_graph=True))
    assert all(g is not None and g.abs().sum() > 0
               for g in torch.autograd.grad(probe, list(module.probe.parameters())))
