"""YAML that remembers where every value came from.

Governance configs (segment scheme, churn and clustering settings) are edited by hand;
a mistake must fail before any run with the file, the line and the reason, so the
loader keeps PyYAML's node marks instead of throwing them away like `safe_load` does.
"""

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from segmentation_platform.core.config._errors import ConfigError


class LocatedDict(dict):
    """A mapping with the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LocatedList(list):
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


def load_located_yaml(text: str, file: str | Path) -> Any:
    """Parse YAML into LocatedDict / LocatedList / plain scalars; duplicate keys are errors."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return _convert(loader, node, file) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context or ""
        if (
            exc.context_mark is not None
            and exc.problem_mark is not None
            and exc.context_mark.line != mark.line
        ):
            context += f" (started on line {exc.context_mark.line + 1})"
        reason = "; ".join(part for part in (context.strip(), exc.problem) if part) or "invalid YAML"
        raise ConfigError(file, mark.line + 1 if mark else None, f"invalid YAML: {reason}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def read_config(path: str | Path) -> "Section":
    """The top-level mapping of a config file as a `Section`: the one way a loader opens YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(path, None, f"cannot read file ({error.strerror})") from error
    data = load_located_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError(
            path, getattr(data, "line", None), "expected a mapping of keys to values at the top level"
        )
    return Section(data, path, "")


def _convert(loader: yaml.SafeLoader, node: yaml.Node, file) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out = LocatedDict()
        out.line, out.key_lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                raise ConfigError(file, key_node.start_mark.line + 1, "mapping keys must be plain words")
            key = str(key)
            if key in out:
                raise ConfigError(
                    file,
                    key_node.start_mark.line + 1,
                    f"duplicate key {key!r} (first defined on line {out.key_lines[key]})",
                )
            out[key] = _convert(loader, value_node, file)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        out = LocatedList(_convert(loader, item, file) for item in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [item.start_mark.line + 1 for item in node.value]
        return out
    return loader.construct_object(node, deep=True)


class Section:
    """Typed, line-aware access to one mapping of a config file."""

    def __init__(self, data: Any, file: str | Path, path: str, line: int = 0):
        if not isinstance(data, dict):
            raise ConfigError(file, getattr(data, "line", line), f"{path or 'top level'} must be a mapping")
        self.data, self.file, self.path = data, file, path
        self.line = getattr(data, "line", line)

    def line_of(self, key: str) -> int:
        return self.data.line_of(key) if isinstance(self.data, LocatedDict) else self.line

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, key: str | None, reason: str) -> ConfigError:
        return ConfigError(self.file, self.line_of(key) if key else self.line, reason)

    def only(self, allowed: Iterable[str], required: Iterable[str] = ()) -> "Section":
        allowed = list(allowed)
        for name in self.data:
            if name not in allowed:
                raise self.error(
                    name, f"unknown field {self.key(name)!r}; allowed here: {', '.join(allowed)}"
                )
        for name in required:
            if name not in self.data:
                raise self.error(None, f"{self.path or 'top level'} is missing required field {name!r}")
        return self

    def has(self, name: str) -> bool:
        return name in self.data

    def section(self, name: str) -> "Section":
        if name not in self.data:
            raise self.error(None, f"{self.path or 'top level'} is missing required field {name!r}")
        return Section(self.data[name], self.file, self.key(name), self.line_of(name))

    def items(self) -> list[tuple[str, Any]]:
        return list(self.data.items())

    def text(self, name: str, default: str | None = None, *, word: bool = False) -> str:
        value = self.data.get(name, default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(
                name if name in self.data else None, f"{self.key(name)} must be a non-empty text"
            )
        if word and not value.replace("_", "").isalnum():
            raise self.error(name, f"{self.key(name)} must be a name of letters, digits and _, got {value!r}")
        return value.strip()

    def number(self, name: str, default: float | None = None, *, low=None, high=None, integer=False):
        value = self.data.get(name, default)
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            raise self.error(
                name if name in self.data else None, f"{self.key(name)} must be {kind}, got {value!r}"
            )
        if (low is not None and value < low) or (high is not None and value > high):
            bound = (
                f"lie in [{low}, {high}]"
                if low is not None and high is not None
                else f"be at least {low}"
                if low is not None
                else f"be at most {high}"
            )
            raise self.error(name, f"{self.key(name)} must {bound}, got {value!r}")
        return value

    def flag(self, name: str, default: bool | None = None) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name if name in self.data else None, f"{self.key(name)} must be true or false")
        return value

    def choice(self, name: str, allowed: Iterable[str], default: str | None = None) -> str:
        allowed = list(allowed)
        value = self.data.get(name, default)
        if value not in allowed:
            raise self.error(
                name if name in self.data else None,
                f"{self.key(name)} must be one of {allowed}, got {value!r}",
            )
        return value

    def day(self, name: str) -> dt.date:
        value = self.data.get(name)
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.error(
                name if name in self.data else None, f"{self.key(name)} must be a date YYYY-MM-DD"
            ) from None

    def words(self, name: str, default: list[str] | None = None) -> tuple[str, ...]:
        value = self.data.get(name, default)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value) or not value:
            raise self.error(
                name if name in self.data else None, f"{self.key(name)} must be a non-empty list of names"
            )
        return tuple(str(v) for v in value)
