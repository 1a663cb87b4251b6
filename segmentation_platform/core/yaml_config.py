"""Reading governance YAML so that every mistake names the file, the key and the reason.

A config error found at code-location load beats a wrong segment found in a dashboard a
month later: loaders built on `ConfigSection` reject unknown keys (typos), wrong types
and out-of-range values with one message a reviewer can act on.
"""

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """`<file>: <key>: <reason>`."""

    def __init__(self, path: Path | str, key: str, reason: str):
        self.path, self.key, self.reason = str(path), key, reason
        super().__init__(f"{path}: {key or '(top level)'}: {reason}")


def read_yaml(path: Path | str) -> "ConfigSection":
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(path, "", f"cannot read file ({error.strerror})") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(path, "", f"not valid YAML{where}") from error
    if not isinstance(data, dict):
        raise ConfigError(path, "", "expected a mapping of keys to values")
    return ConfigSection(path, "", data)


class ConfigSection:
    """A mapping inside a config file that remembers where it is, for error messages."""

    def __init__(self, path: Path, prefix: str, data: dict):
        self.path, self.prefix, self.data = path, prefix, data

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), reason)

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
