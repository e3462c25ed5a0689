"""The run configuration: option fields (``fields``), the typed sections (``schema``) and their
building from YAML and overrides (``structured``). Importable without torch."""

from tribyol.config.schema import (
    DEFAULT_EXTRA_VIEWS,
    EXTRA_VIEWS,
    NORMS,
    AugmentConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    config_default,
    config_field,
    config_tree,
    dotted_items,
    parse_override,
    read_yaml_file,
    require,
    set_dotted,
    to_dict,
    upgrade_tree,
    validate_values,
)

__all__ = [
    "DEFAULT_EXTRA_VIEWS", "EXTRA_VIEWS", "NORMS", "AugmentConfig", "DataConfig", "ModelConfig",
    "OptimConfig", "RunConfig", "TrainConfig", "config_default", "config_field", "config_tree",
    "dotted_items", "parse_override", "read_yaml_file", "require", "set_dotted", "to_dict",
    "upgrade_tree", "validate_values",
]
