"""Feature store: weekly as-of snapshots in `features.customer_features`.

A weekly partition's snapshot is taken at its window's end (00:00 on the Monday closing
the week) over all history before it, not just that week. A run covers one partition or,
under the single-run backfill policy, a whole range, one snapshot after another; each
snapshot's rows are replaced, never appended.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import features, warehouse
from segmentation_platform.defs._lib.metadata import (
    OWNER,
    count_rows,
    distribution_markdown,
    table_metadata,
    version_of,
)
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots

FEATURES_LOGIC_VERSION = "1"
FEATURE_CONFIG = features.load_feature_config()

FEATURES_KEY = dg.AssetKey(["features", "customer_features"])
KEY_MAP_KEY = dg.AssetKey(["identity", "customer_key_map"])
FEATURES_TABLE = "features.customer_features"

UNIQUE_CHECK = "one_row_per_customer_per_snapshot"
NO_FUTURE_CHECK = "reads_no_data_after_snapshot"


def _feature_schema() -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=feature.name,
                type=feature.sql_type,
                description=f"{feature.description} Unit: {feature.unit}; window: {feature.window}.",
                tags={"group": feature.group},
            )
            for feature in features.feature_registry(FEATURE_CONFIG)
        ]
    )


@dg.asset(
    key=FEATURES_KEY,
    description=(
        "Customer features as of 00:00 on each weekly snapshot date (the partition's end): "
        "purchases, channels, basket, margin, email engagement, support, acquisition, consent and "
        "lifecycle stage, one row per customer with any record before the snapshot. Only records "
        "dated before the snapshot are read. Dictionary: docs/feature_dictionary.md."
    ),
    group_name="features",
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[*(dg.AssetKey(["raw", source.name]) for source in features.FEATURE_SOURCES), KEY_MAP_KEY],
    owners=[OWNER],
    kinds={"duckdb", "sql"},
    code_version=version_of(
        FEATURES_LOGIC_VERSION, FEATURE_CONFIG, [source.person_ref for source in features.FEATURE_SOURCES]
    ),
    metadata=table_metadata(FEATURES_TABLE, _feature_schema()),
    tags={"layer": "features"},
    check_specs=[
        dg.AssetCheckSpec(
            UNIQUE_CHECK,
            asset=FEATURES_KEY,
            blocking=True,
            description="No customer appears twice in a snapshot and every row has a customer_key.",
        ),
        dg.AssetCheckSpec(
            NO_FUTURE_CHECK,
            asset=FEATURES_KEY,
            blocking=True,
            description="Every purchase and record a row was built from is dated before its snapshot.",
        ),
    ],
)
def customer_features(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    dates = snapshot_dates(context)
    columns = features.feature_columns(FEATURE_CONFIG)
    written = {}
    with duckdb.get_connection() as conn:
        for snapshot in dates:
            frame = features.compute_customer_features(conn, snapshot, FEATURE_CONFIG)
            written[snapshot] = warehouse.replace_partitions(
                conn, FEATURES_TABLE, frame, "snapshot_date", [snapshot], columns=columns
            )
            context.log.info(f"features as of {snapshot}: {written[snapshot]} customers")
        coverage = features.order_coverage(conn, dates[-1])
        table = warehouse.table_ref(FEATURES_TABLE)
        in_run = "snapshot_date IN (SELECT unnest(?))"
        duplicates = count_rows(
            conn,
            f"SELECT count(*) FROM (SELECT snapshot_date, customer_key FROM {table} WHERE {in_run} "
            "GROUP BY ALL HAVING count(*) > 1)",
            [dates],
        )
        missing_keys = count_rows(
            conn, f"SELECT count(*) FROM {table} WHERE {in_run} AND customer_key IS NULL", [dates]
        )
        future_rows = count_rows(
            conn,
            f"SELECT count(*) FROM {table} WHERE {in_run} AND (last_seen_at >= snapshot_date "
            "OR last_purchase_at >= snapshot_date OR first_seen_at >= snapshot_date OR recency_days < 1)",
            [dates],
        )
        total_rows = warehouse.row_count(conn, FEATURES_TABLE)
        stages = distribution_markdown(
            conn, FEATURES_TABLE, "lifecycle_stage", dates, order=list(features.LIFECYCLE_STAGES)
        )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total_rows,
            "dagster/partition_row_count": sum(written.values()),
            "snapshots": dg.MetadataValue.json({d.isoformat(): n for d, n in written.items()}),
            "lifecycle_stages": dg.MetadataValue.md(stages),
            "orders_before_latest_snapshot": coverage["orders"],
            "anonymous_orders": coverage["anonymous_orders"],
            "orders_unknown_to_identity": coverage["unmapped_orders"],
        }
    )
    yield dg.AssetCheckResult(
        check_name=UNIQUE_CHECK,
        passed=duplicates == 0 and missing_keys == 0,
        metadata={"duplicated_customers": duplicates, "rows_without_customer_key": missing_keys},
    )
    yield dg.AssetCheckResult(
        check_name=NO_FUTURE_CHECK,
        passed=future_rows == 0,
        metadata={"rows_with_data_at_or_after_snapshot": future_rows, "snapshots_checked": len(dates)},
    )


feature_assets = [customer_features]
