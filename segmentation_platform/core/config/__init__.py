"""The one way to read governance YAML: located values, typed sections, one ConfigError."""

from segmentation_platform.core.config._errors import ConfigError
from segmentation_platform.core.config._located import (
    LocatedDict,
    Section,
    load_located_yaml,
    read_config,
)
from segmentation_platform.core.config._paths import CONFIG_DIR

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "LocatedDict",
    "Section",
    "load_located_yaml",
    "read_config",
]
