"""Measurement: segment and channel KPIs, migration between segments, lift vs holdout with confidence intervals.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.measurement._kpis import (
    ASSIGNMENTS_TABLE,
    CAC_WINDOW_DAYS,
    CHANNEL_KPI_COLUMNS,
    GONE_SEGMENT,
    LIFT_COLUMNS,
    LONG_WINDOW_DAYS,
    MIGRATION_COLUMNS,
    NEW_SEGMENT,
    PURCHASE_SOURCES,
    SEGMENT_KPI_COLUMNS,
    SHORT_WINDOW_DAYS,
    channel_kpis,
    lift,
    lift_table,
    migration_matrix,
    newcombe_difference,
    purchases_sql,
    segment_kpis,
    welch_difference,
)

__all__ = [
    "ASSIGNMENTS_TABLE",
    "CAC_WINDOW_DAYS",
    "CHANNEL_KPI_COLUMNS",
    "GONE_SEGMENT",
    "LIFT_COLUMNS",
    "LONG_WINDOW_DAYS",
    "MIGRATION_COLUMNS",
    "NEW_SEGMENT",
    "PURCHASE_SOURCES",
    "SEGMENT_KPI_COLUMNS",
    "SHORT_WINDOW_DAYS",
    "channel_kpis",
    "lift",
    "lift_table",
    "migration_matrix",
    "newcombe_difference",
    "purchases_sql",
    "segment_kpis",
    "welch_difference",
]
