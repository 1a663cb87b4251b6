"""Feature store: point-in-time customer features as of a snapshot, and their registry (the feature dictionary).

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.features._store import (
    CONFIG_PATH,
    FEATURE_SOURCES,
    KEY_MAP_TABLE,
    LIFECYCLE_STAGES,
    FeatureConfig,
    LifecycleThresholds,
    compute_customer_features,
    customer_orders_sql,
    feature_columns,
    feature_dictionary_markdown,
    feature_registry,
    load_feature_config,
    order_coverage,
    snapshot_cutoff,
)

__all__ = [
    "CONFIG_PATH",
    "FEATURE_SOURCES",
    "FeatureConfig",
    "KEY_MAP_TABLE",
    "LIFECYCLE_STAGES",
    "LifecycleThresholds",
    "compute_customer_features",
    "customer_orders_sql",
    "feature_columns",
    "feature_dictionary_markdown",
    "feature_registry",
    "load_feature_config",
    "order_coverage",
    "snapshot_cutoff",
]
