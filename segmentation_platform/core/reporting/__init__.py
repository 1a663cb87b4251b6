"""Reporting: the HTML report of a snapshot and its inline SVG charts.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.reporting._charts import (
    bar_chart,
)
from segmentation_platform.core.reporting._report import (
    load_report_data,
    markdown_summary,
    render_report,
)

__all__ = [
    "bar_chart",
    "load_report_data",
    "markdown_summary",
    "render_report",
]
