"""Engine: the Lightning module, data loading, callbacks and the run driver."""

from tribyol.engine.module import NonFiniteLossError, PretrainModule
from tribyol.engine.run import RunDirExistsError, build_trainer, pretrain

__all__ = [
    "NonFiniteLossError",
    "PretrainModule",
    "RunDirExistsError",
    "build_trainer",
    "pretrain",
]
