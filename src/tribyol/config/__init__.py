"""The run configuration: option fields, their rules and flags (``fields``), the typed sections
and their value checks (``schema``), YAML files, overrides and older trees (``load``), and the
dataclasses built from a tree (``structured``). Importable without torch."""

from tribyol.config.load import (
    config_tree,
    dotted_items,
    parse_override,
    read_yaml_file,
    set_dotted,
    upgrade_tree,
)
from tribyol.config.schema import (
    DEFAULT_EXTRA_VIEWS,
    DEFAULT_METHOD,
    EXTRA_VIEWS,
    NORMS,
    AugmentConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    config_default,
    config_option,
    require,
    to_dict,
    validate_values,
)

__all__ = [
    "DEFAULT_EXTRA_VIEWS", "DEFAULT_METHOD", "EXTRA_VIEWS", "NORMS", "AugmentConfig", "DataConfig",
    "ModelConfig", "OptimConfig", "RunConfig", "TrainConfig", "config_default", "config_option",
    "config_tree", "dotted_items", "parse_override", "read_yaml_file", "require", "set_dotted",
    "to_dict", "upgrade_tree", "validate_values",
]
