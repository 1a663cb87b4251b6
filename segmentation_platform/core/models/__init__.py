"""Models fitted per snapshot: `rfm`, `clv`, `churn`, `clustering`, and the `registry` they record in."""

from segmentation_platform.core.models._history import InsufficientHistory

__all__ = ["InsufficientHistory"]
