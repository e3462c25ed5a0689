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
    upgrade_state_keys,
)
from tribyol.methods.heads import BYOLHeads, byol_heads, projection_head
from tribyol.methods.losses import info_nce, negative_cosine, normalized_mse, nt_xent
from tribyol.methods.registry import (
    METHODS,
    canonical_method,
    default_options,
    register,
    resolve_options,
)

__all__ = [
    "BYOLHeads",
    "METHODS",
    "Method",
    "MethodContext",
    "MomentumMethod",
    "MomentumOptions",
    "StepOutput",
    "byol_heads",
    "canonical_method",
    "default_options",
    "ema_update_",
    "info_nce",
    "negative_cosine",
    "normalized_mse",
    "nt_xent",
    "projection_head",
    "register",
    "resolve_options",
    "upgrade_state_keys",
]
