"""Reporting: the per-snapshot HTML segment report and its inline SVG charts.

`load_report_data(conn, snapshot)` reads what the report shows from the warehouse,
`render_report(data)` turns it into one self-contained HTML file (no network, no
scripts) and `markdown_summary(data)` into a compact table for run metadata.
"""

from segmentation_platform.core.reporting._charts import bar_chart
from segmentation_platform.core.reporting._data import ReportData, load_report_data
from segmentation_platform.core.reporting._report import markdown_summary, render_report

__all__ = [
    "ReportData",
    "load_report_data",
    "render_report",
    "markdown_summary",
    "bar_chart",
]
