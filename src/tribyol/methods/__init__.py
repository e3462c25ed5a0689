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
    MethodOptions,
    MomentumMethod,
    MomentumOptions,
    StepOutput,
    ema_update_,
    method_name,
)
from tribyol.methods.losses import info_nce, negative_cosine, normalized_mse, nt_xent
from tribyol.methods.registry import (
    METHODS,
    default_options,
    register,
    resolve_options,
)
from tribyol.nets.heads import BYOLHeads, byol_heads, projection_head

__all__ = [
    "BYOLHeads",
    "METHODS",
    "Method",
    "MethodContext",
    "MethodOptions",
    "MomentumMethod",
    "MomentumOptions",
    "StepOutput",
    "byol_heads",
    "default_options",
    "ema_update_",
    "method_name",
    "info_nce",
    "negative_cosine",
    "normalized_mse",
    "nt_xent",
    "projection_head",
    "register",
    "resolve_options",
]
