"""Checkpoints and encoders: checkpoint files (``files``), encoder metadata (``metadata``) and
exported encoders (``encoders``).

Checkpoints are only ever read with ``torch.load(weights_only=True)``. Each checkpoint that
tribyol writes carries a SHA-256 of all its tensors (``CHECKSUM_KEY``), and so does each export
(``EXPORT_CHECKSUM`` in its metadata), so damage inside the tensor data, which neither a zip
archive nor safetensors detects, is caught when the file is read.
"""

from tribyol.checkpoints.encoders import (
    check_finite,
    file_mode,
    load_encoder,
    read_export,
    temp_name,
    write_safetensors,
)
from tribyol.checkpoints.files import (
    BACKBONE_PREFIX,
    CHECKPOINT_NAME,
    CHECKSUM_KEY,
    PREVIOUS_NAME,
    add_checksum,
    describe_kept,
    encoder_state,
    find_checkpoint,
    last_good_checkpoint,
    load_checkpoint,
    read_checkpoint,
    storage_nbytes,
    tensor_checksum,
)
from tribyol.checkpoints.metadata import (
    ENCODER_FORMAT,
    EXPORT_CHECKSUM,
    REQUIRED_METADATA,
    EncoderInfo,
    encoder_info,
    encoder_metadata,
    run_settings,
)

__all__ = [
    "BACKBONE_PREFIX", "CHECKPOINT_NAME", "CHECKSUM_KEY", "ENCODER_FORMAT", "EXPORT_CHECKSUM",
    "PREVIOUS_NAME", "REQUIRED_METADATA", "EncoderInfo", "add_checksum", "check_finite",
    "describe_kept", "encoder_info", "encoder_metadata", "encoder_state", "file_mode",
    "find_checkpoint", "last_good_checkpoint", "load_checkpoint", "load_encoder", "read_export",
    "read_checkpoint", "run_settings", "storage_nbytes", "temp_name", "tensor_checksum",
    "write_safetensors",
]
