"""Reading governance YAML so that every mistake names the file, the key and the reason.

A config error found at code-location load beats a wrong segment found in a dashboard a
month later: loaders built on `ConfigSection` reject unknown keys (typos), wrong types
and out-of-range values with one message a reviewer can act on.
"""

from pathlib import Path
from typing import Any

from segmentation_platform.core.config._errors import ConfigError
from segmentation_platform.core.config._located import LocatedDict, load_located_yaml


def read_yaml(path: Path | str) -> "ConfigSection":
    """The file's top-level mapping; every later error names its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(path, None, f"cannot read file ({error.strerror})", key="(top level)") from error
    data = load_located_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError(path, None, "expected a mapping of keys to values", key="(top level)")
    return ConfigSection(path, "", data)


class ConfigSection:
    """A mapping inside a config file that remembers where it is, for error messages."""

    def __init__(self, path: Path, prefix: str, data: dict):
        self.path, self.prefix, self.data = path, prefix, data

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        line = self.data.line_of(name) if isinstance(self.data, LocatedDict) else None
        return ConfigError(self.path, line, reason, key=self.key(name) or "(top level)")

    def only(self, *allowed: str) -> None:
        """Reject keys nobody reads: a misspelt key would otherwise be silently ignored."""
        for name in self.data:
            if name not in allowed:
                raise self.error(str(name), f"unknown key (expected one of: {', '.join(allowed)})")

    def raw(self, name: str, default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                raise self.error(name, "required key is missing")
            return default
        return self.data[name]

    def section(self, name: str) -> "ConfigSection":
        value = self.raw(name)
        if not isinstance(value, dict):
            raise self.error(name, f"expected a mapping, got {_shown(value)}")
        return ConfigSection(self.path, self.key(name), value)

    def integer(self, name: str, default: Any = ..., minimum: int | None = None, maximum: int | None = None):
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_shown(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum}, got {value}")
        return value

    def number(
        self, name: str, default: Any = ..., minimum: float | None = None, maximum: float | None = None
    ):
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_shown(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum}, got {value}")
        return float(value)

    def string(self, name: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, f"expected a non-empty string, got {_shown(value)}")
        if choices is not None and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def items(self, name: str) -> list:
        value = self.raw(name)
        if not isinstance(value, list) or not value:
            raise self.error(name, f"expected a non-empty list, got {_shown(value)}")
        return value


def _shown(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
