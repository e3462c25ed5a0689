"""Engine: the Lightning module, data loading, callbacks and the run driver."""

from tribyol.engine.module import PretrainModule
from tribyol.engine.run import pretrain
from tribyol.engine.trainer import build_trainer
from tribyol.errors import NonFiniteLossError, RunDirExistsError  # raised by pretrain

__all__ = [
    "NonFiniteLossError",
    "PretrainModule",
    "RunDirExistsError",
    "build_trainer",
    "pretrain",
]
