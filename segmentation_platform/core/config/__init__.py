"""The one way to read governance YAML: located values, typed sections, one ConfigError."""

from segmentation_platform.core.config._errors import ConfigError
from segmentation_platform.core.config._located import (
    LocatedDict,
    Section,
    load_located_yaml,
    read_config,
)
from segmentation_platform.core.config._paths import CONFIG_DIR
from segmentation_platform.core.config._sections import (
    ConfigSection,
    read_yaml,
)

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "ConfigSection",
    "LocatedDict",
    "Section",
    "load_located_yaml",
    "read_config",
    "read_yaml",
]
