"""Cross-process BatchNorm that runs on any device (PyTorch's SyncBatchNorm is GPU-only).

Under DDP each rank sees only its share of the batch; ``GlobalBatchNorm`` normalises with the
statistics of the global batch, as ``torch.nn.SyncBatchNorm`` does on GPUs. It all-reduces the
per-channel sum, sum of squares and count in one differentiable collective, so the gradient
flows through the global statistics to every rank. Without an initialised process group (or
in eval mode) it is a plain BatchNorm. On CUDA the engine keeps PyTorch's fused kernel.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the batch of all processes; for inputs of shape (N, C, ...)."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {x.dim()}D")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not (self.training and _distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce  # differentiable collective

        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float()  # statistics in fp32, also under bf16 autocast
        count = torch.full((1,), x.numel() / channels, device=x.device)
        total = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * (n / (n - 1.0).clamp_min(1.0))  # as BatchNorm keeps it; n stays on device
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_to_global_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d in ``module`` by a ``GlobalBatchNorm`` with its state."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        state = module.state_dict()
        device = next(iter(state.values())).device if state else None
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=device)
        new.load_state_dict(state)
        new.train(module.training)
        for p_new, p_old in zip(new.parameters(), module.parameters(), strict=True):
            p_new.requires_grad_(p_old.requires_grad)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_to_global_bn(child))
    return module
