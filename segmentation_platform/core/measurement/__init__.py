"""Measurement: did acting on the segments pay off?

Per weekly snapshot: what each segment is worth and went on to spend (`segment_kpis`),
what acquiring a customer costs per channel against what they are worth (`channel_kpis`:
CAC, LTV:CAC, payback), how customers move between segments (`migration_matrix`), and the
causal effect of activation, treated vs holdout, with 95% confidence intervals (`lift`,
`lift_table` on a DataFrame of per-customer outcomes). Outcomes come from the days after
the snapshot and stay NULL, with a note, until the warehouse holds that window.
Pure Python + DuckDB; no Dagster.
"""

from segmentation_platform.core.measurement._checks import (
    flows_conserve_customers,
    kpis_cover_assignments,
    lifts_outside_intervals,
)
from segmentation_platform.core.measurement._kpis import CAC_WINDOW_DAYS, channel_kpis, segment_kpis
from segmentation_platform.core.measurement._lift import (
    lift,
    lift_table,
    newcombe_difference,
    welch_difference,
)
from segmentation_platform.core.measurement._migration import GONE_SEGMENT, NEW_SEGMENT, migration_matrix
from segmentation_platform.core.measurement._purchases import (
    LONG_WINDOW_DAYS,
    PURCHASE_SOURCES,
    SHORT_WINDOW_DAYS,
    MeasurementError,
    purchases_sql,
)
from segmentation_platform.core.measurement._tables import (
    CHANNEL_KPIS_SCHEMA,
    LIFT_SCHEMA,
    MIGRATION_SCHEMA,
    SEGMENT_KPIS_SCHEMA,
    TABLE_SCHEMAS,
)

__all__ = [
    # the measurements
    "segment_kpis",
    "channel_kpis",
    "migration_matrix",
    "lift",
    "lift_table",
    "newcombe_difference",
    "welch_difference",
    "purchases_sql",
    "MeasurementError",
    # windows and labels
    "SHORT_WINDOW_DAYS",
    "LONG_WINDOW_DAYS",
    "CAC_WINDOW_DAYS",
    "PURCHASE_SOURCES",
    "NEW_SEGMENT",
    "GONE_SEGMENT",
    # the tables
    "SEGMENT_KPIS_SCHEMA",
    "CHANNEL_KPIS_SCHEMA",
    "MIGRATION_SCHEMA",
    "LIFT_SCHEMA",
    "TABLE_SCHEMAS",
    # the checks' rules
    "kpis_cover_assignments",
    "flows_conserve_customers",
    "lifts_outside_intervals",
]
