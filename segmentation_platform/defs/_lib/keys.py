"""Every asset key, derived from the table it materializes (asset key prefix = schema).

Groups import keys from here rather than from each other, so no group reaches into
another group's module and no two modules give one key different names.
"""

import dagster as dg

from segmentation_platform.core.warehouse import tables


def key_of(table: str) -> dg.AssetKey:
    """`models.clv_scores` -> AssetKey(["models", "clv_scores"])."""
    return dg.AssetKey(table.split("."))


def raw_key(source: str) -> dg.AssetKey:
    return key_of(tables.raw_table(source))


def quarantine_key(source: str) -> dg.AssetKey:
    return key_of(tables.quarantine_table(source))


CUSTOMER_KEY_MAP_KEY = key_of(tables.CUSTOMER_KEY_MAP)
CUSTOMERS_KEY = key_of(tables.CUSTOMERS)
CUSTOMER_FEATURES_KEY = key_of(tables.CUSTOMER_FEATURES)
RFM_SCORES_KEY = key_of(tables.RFM_SCORES)
CLV_SCORES_KEY = key_of(tables.CLV_SCORES)
CLV_VALIDATION_KEY = key_of(tables.CLV_VALIDATION)
CHURN_SCORES_KEY = key_of(tables.CHURN_SCORES)
CHURN_DRIVERS_KEY = key_of(tables.CHURN_DRIVERS)
BEHAVIOUR_CLUSTERS_KEY = key_of(tables.BEHAVIOUR_CLUSTERS)
BEHAVIOUR_CLUSTER_PROFILES_KEY = key_of(tables.BEHAVIOUR_CLUSTER_PROFILES)
SEGMENT_ASSIGNMENTS_KEY = key_of(tables.SEGMENT_ASSIGNMENTS)
SEGMENT_PROFILES_KEY = key_of(tables.SEGMENT_PROFILES)
SEGMENT_CHANGELOG_KEY = key_of(tables.SEGMENT_CHANGELOG)
HOLDOUTS_KEY = key_of(tables.HOLDOUTS)
EXPORTS_KEY = key_of(tables.EXPORTS)
SEGMENT_KPIS_KEY = key_of(tables.SEGMENT_KPIS)
CHANNEL_KPIS_KEY = key_of(tables.CHANNEL_KPIS)
MIGRATION_KEY = key_of(tables.MIGRATION)
LIFT_KEY = key_of(tables.LIFT)
REPORT_KEY = dg.AssetKey(["measurement", "report"])  # an HTML file per snapshot, not a table
