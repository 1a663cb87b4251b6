"""The one configuration error of the platform: `<file>:<line>: <key>: <reason>`."""

from pathlib import Path


class ConfigError(ValueError):
    """A governance artefact is invalid. Every loader raises this, with the file, the line
    (when the YAML parser knows it), the dotted key and a reason a reviewer can act on."""

    def __init__(self, file: str | Path, line: int | None, reason: str, key: str = ""):
        self.file, self.line, self.key, self.reason = str(file), line, key, reason
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")

    @property
    def path(self) -> str:
        return self.file
