"""Self-supervised methods, one file each, registered by name."""

from tribyol.methods import (  # noqa: F401  (registers the methods)
    byol,
    cross,
    pirl_jigsaw,
    pirl_rotation,
    simclr,
    simsiam,
    supervised,
    tribyol,
)
from tribyol.methods.base import (
    Method,
    MethodContext,
    MomentumMethod,
    MomentumOptions,
    StepOutput,
    ema_update_,
    normalized_mse,
)
from tribyol.methods.registry import METHODS, default_options, register, resolve_options

__all__ = [
    "METHODS",
    "Method",
    "MethodContext",
    "MomentumMethod",
    "MomentumOptions",
    "StepOutput",
    "default_options",
    "ema_update_",
    "normalized_mse",
    "register",
    "resolve_options",
]
