"""``train.compile``: the step under ``torch.compile``.

Compiled: the method's ``forward_views`` (the online and target forwards and the loss; its
backward is AOTAutograd's compiled backward of that graph), and the EMA update (one compiled
foreach update, tau a tensor). The optimizer is the fused SGD / AdamW kernel with its learning
rate a tensor (``optim.build_optimizer``). Eager: the augmentation (its draws come from the
step's ``torch.Generator``, which dynamo cannot trace), the probe, the NaN guard and logging.
On CUDA the forward runs as CUDA graphs (``mode="reduce-overhead"``). docs/architecture.md,
"The compiled step".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.torch_version import TorchVersion

from tribyol.errors import ConfigError
from tribyol.methods.base import Method, StepOutput

log = logging.getLogger(__name__)

# YAML reads a bare on / off as a boolean: those mean the same as the words.
_WORDS = {"true": "on", "false": "off"}
# The oldest torch the compiled step is run on (the GPU machine's); pyproject allows older ones
# for the eager step, so compiling asks for this one instead.
COMPILE_TORCH = "2.11"


def compile_setting(value: Any) -> str:
    """``train.compile`` as one of off, on, auto (``True`` / ``False`` from YAML: on / off)."""
    text = str(value).lower()
    return _WORDS.get(text, text)


def compile_wanted(value: Any, cuda: bool, world_size: int,
                   version: str = str(torch.__version__)) -> bool:
    """Whether this run compiles its step: ``on``; ``auto`` only on CUDA (on a CPU the compile
    costs minutes and the step runs no faster, docs/architecture.md); never under DDP, nor on
    a torch older than ``COMPILE_TORCH``."""
    setting = compile_setting(value)
    if setting == "off":
        return False
    if TorchVersion(version) < COMPILE_TORCH:
        if setting == "on":
            raise ConfigError(
                f"train.compile=on needs torch >= {COMPILE_TORCH} (the compiled step is tested "
                f"on 2.11 and 2.14); this is torch {version}: upgrade torch or set "
                "train.compile=off")
        return False
    if world_size > 1:
        if setting == "on":
            raise ConfigError(
                f"train.compile=on is not supported with {world_size} processes (DDP): the "
                "compiled step is tested on one device only; set train.compile=off (or auto)")
        return False
    return setting == "on" or cuda


def compiles_forward(method: Method) -> bool:
    """Whether the method's step is ``forward_views`` alone; a method with its own ``forward``
    (PIRL: it draws from the step's generator and uses a memory bank) stays eager."""
    return type(method).forward is Method.forward


@torch.no_grad()
def _ema_foreach_(targets: list[Tensor], onlines: list[Tensor], tau: Tensor, rest: Tensor) -> None:
    """``target <- tau * target + (1 - tau) * online``; ``rest`` holds ``1 - tau``, computed in
    double precision as the eager update's ``alpha`` is."""
    torch._foreach_mul_(targets, tau)
    torch._foreach_add_(targets, torch._foreach_mul(onlines, rest))


class CompiledStep:
    """The compiled parts of one run's step, built on its first step (on the device)."""

    def __init__(self, method: Method, cuda: bool) -> None:
        self.cudagraphs = cuda
        self.forward_views = None
        if compiles_forward(method):
            self.forward_views = torch.compile(
                method.forward_views, mode="reduce-overhead" if cuda else None)
        else:
            log.info("train.compile: %s has its own forward (the step's generator); it stays "
                     "eager, the EMA and the optimizer are still compiled / fused", method.name)
        self._ema = torch.compile(_ema_foreach_)
        self._tau: tuple[Tensor, Tensor] | None = None

    def forward(self, method: Method, views: list[Tensor], labels: Tensor | None,
                eager: Callable[[], StepOutput]) -> StepOutput:
        """The method's output for ``views``; ``eager`` where the forward is not compiled."""
        if self.forward_views is None:
            return eager()
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new step: the last one's outputs go
        out = self.forward_views(views, labels)
        if self.cudagraphs:
            # A CUDA graph's outputs are overwritten by its next replay, and Lightning keeps the
            # logged tensors past this step: copies of them (a few small kernels).
            out = StepOutput(
                loss=out.loss.clone(),
                features=None if out.features is None else out.features.clone(),
                projections=None if out.projections is None else out.projections.clone(),
                logs={k: v.clone() for k, v in out.logs.items()},
            )
        return out

    def ema(self, target: nn.Module, online: nn.Module, tau: float) -> None:
        """``methods.base.ema_update_``, compiled once: tau goes in as a tensor, so the
        schedule's next value reuses the same compiled update."""
        targets = list(target.parameters())
        onlines = [p.detach() for p in online.parameters()]
        if len(targets) != len(onlines):
            raise ValueError("EMA pair has different parameter lists")
        if self._tau is None:
            like = {"dtype": targets[0].dtype, "device": targets[0].device}
            self._tau = (torch.zeros((), **like), torch.zeros((), **like))
        # fill_ casts the doubles to the weights' dtype, as the eager update's scalars are
        self._tau[0].fill_(tau)
        self._tau[1].fill_(1.0 - tau)
        self._ema(targets, onlines, *self._tau)
