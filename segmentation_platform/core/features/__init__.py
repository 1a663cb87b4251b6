"""Feature store: point-in-time customer features as of a snapshot, and their registry (the feature dictionary).

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.features._checks import SnapshotChecks, check_snapshots
from segmentation_platform.core.features._config import (
    CONFIG_PATH,
    FeatureConfig,
    LifecycleThresholds,
    load_feature_config,
)
from segmentation_platform.core.features._registry import (
    customer_features_schema,
    feature_columns,
    feature_dictionary_markdown,
    feature_registry,
)
from segmentation_platform.core.features._store import (
    FEATURE_SOURCES,
    LIFECYCLE_STAGES,
    compute_customer_features,
    customer_orders_sql,
    order_coverage,
    snapshot_cutoff,
)
from segmentation_platform.core.warehouse import tables

# TRANSITION(issue 14): core/models/churn reads `features.KEY_MAP_TABLE`; use tables.CUSTOMER_KEY_MAP.
KEY_MAP_TABLE = tables.CUSTOMER_KEY_MAP

__all__ = [
    "CONFIG_PATH",
    "FEATURE_SOURCES",
    "FeatureConfig",
    "KEY_MAP_TABLE",
    "LIFECYCLE_STAGES",
    "LifecycleThresholds",
    "SnapshotChecks",
    "check_snapshots",
    "compute_customer_features",
    "customer_features_schema",
    "customer_orders_sql",
    "feature_columns",
    "feature_dictionary_markdown",
    "feature_registry",
    "load_feature_config",
    "order_coverage",
    "snapshot_cutoff",
]
