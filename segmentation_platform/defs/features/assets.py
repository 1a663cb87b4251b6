"""Feature store: weekly as-of snapshots in `features.customer_features`.

A weekly partition's snapshot is taken at its window's end (00:00 on the Monday closing
the week) over all history before it, not just that week. A run covers one partition or,
under the single-run backfill policy, a whole range, one snapshot after another; each
snapshot's rows are replaced, never appended.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import features, warehouse
from segmentation_platform.defs._lib.keys import CUSTOMER_FEATURES_KEY, CUSTOMER_KEY_MAP_KEY, raw_key
from segmentation_platform.defs._lib.metadata import OWNER, distribution_markdown, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots

FEATURES_LOGIC_VERSION = "1"
UNIQUE_CHECK = "one_row_per_customer_per_snapshot"
NO_FUTURE_CHECK = "reads_no_data_after_snapshot"


def features_code_version(config: features.FeatureConfig) -> str:
    """Logic version, the feature config (every key changes results; there are no runtime
    knobs) and how each source names its person."""
    return version_of(
        FEATURES_LOGIC_VERSION, config, [source.person_ref for source in features.FEATURE_SOURCES]
    )


def build_feature_assets(config: features.FeatureConfig) -> list:
    """The `customer_features` asset (with its two checks) under `config`."""
    schema = features.customer_features_schema(config)

    @dg.asset(
        key=CUSTOMER_FEATURES_KEY,
        description=schema.description,
        group_name="features",
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[*(raw_key(source.name) for source in features.FEATURE_SOURCES), CUSTOMER_KEY_MAP_KEY],
        owners=[OWNER],
        kinds={"duckdb", "sql"},
        code_version=features_code_version(config),
        metadata=schema_metadata(schema),
        tags={"layer": "features"},
        check_specs=[
            dg.AssetCheckSpec(
                UNIQUE_CHECK,
                asset=CUSTOMER_FEATURES_KEY,
                blocking=True,
                description="No customer appears twice in a snapshot and every row has a customer_key.",
            ),
            dg.AssetCheckSpec(
                NO_FUTURE_CHECK,
                asset=CUSTOMER_FEATURES_KEY,
                blocking=True,
                description="Every purchase and record a row was built from is dated before its snapshot.",
            ),
        ],
    )
    def customer_features(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        written = {}
        with duckdb.get_connection() as conn:
            for snapshot in dates:
                frame = features.compute_customer_features(conn, snapshot, config)
                written[snapshot] = warehouse.replace_partitions(
                    conn, schema.table, frame, "snapshot_date", [snapshot], columns=schema.sql_columns
                )
                context.log.info(f"features as of {snapshot}: {written[snapshot]} customers")
            coverage = features.order_coverage(conn, dates[-1])
            checked = features.check_snapshots(conn, dates)
            total_rows = warehouse.row_count(conn, schema.table)
            stages = distribution_markdown(
                conn, schema.table, "lifecycle_stage", dates, order=list(features.LIFECYCLE_STAGES)
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
            passed=checked.unique,
            metadata={
                "duplicated_customers": checked.duplicated_customers,
                "rows_without_customer_key": checked.rows_without_customer_key,
            },
        )
        yield dg.AssetCheckResult(
            check_name=NO_FUTURE_CHECK,
            passed=checked.no_future,
            metadata={
                "rows_with_data_at_or_after_snapshot": checked.rows_with_data_at_or_after_snapshot,
                "snapshots_checked": len(dates),
            },
        )

    return [customer_features]
