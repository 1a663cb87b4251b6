"""reporting: public surface."""

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
