"""Feature store and RFM: weekly as-of snapshots in `features.customer_features` and `models.rfm_scores`.

A weekly partition's snapshot is taken at its window's end (00:00 on the Monday closing
the week) over all history before it, not just that week. A run covers one partition or,
under the single-run backfill policy, a whole range, one snapshot after another; each
snapshot's rows are replaced, never appended.
"""

from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import features, rfm, warehouse
from segmentation_platform.defs.metadata import OWNER, column_schema, table_metadata, version_of
from segmentation_platform.defs.partitions import snapshot_dates, weekly_snapshots

FEATURES_LOGIC_VERSION = "1"
RFM_LOGIC_VERSION = "1"
FEATURE_CONFIG = features.load_feature_config()
RFM_CONFIG = rfm.load_rfm_config()

FEATURES_KEY = dg.AssetKey(["features", "customer_features"])
RFM_KEY = dg.AssetKey(["models", "rfm_scores"])
KEY_MAP_KEY = dg.AssetKey(["identity", "customer_key_map"])
FEATURES_TABLE = "features.customer_features"
RFM_TABLE = "models.rfm_scores"

UNIQUE_CHECK = "one_row_per_customer_per_snapshot"
NO_FUTURE_CHECK = "reads_no_data_after_snapshot"
SCORE_RANGE_CHECK = "scores_between_1_and_5"
SEGMENT_CHECK = "every_row_has_a_segment"
COVERAGE_CHECK = "scores_every_purchaser"
# Distribution tables show at most this many snapshots of a backfill: the latest ones.
SNAPSHOTS_SHOWN = 6


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


def _distribution_markdown(
    conn, table: str, column: str, dates: list[date], order: list[str] | None = None
) -> str:
    """Customers per value of `column` (rows) and snapshot (columns), with shares."""
    shown = dates[-SNAPSHOTS_SHOWN:]
    rows = conn.execute(
        f"SELECT {warehouse.quote(column)}, snapshot_date, count(*) FROM {warehouse.table_ref(table)} "
        "WHERE snapshot_date IN (SELECT unnest(?)) GROUP BY ALL",
        [shown],
    ).fetchall()
    counts = {(value, snapshot): n for value, snapshot, n in rows}
    totals = {snapshot: sum(n for (_, s), n in counts.items() if s == snapshot) for snapshot in shown}
    values = [v for v in order or [] if any(k[0] == v for k in counts)]
    values += sorted({value for value, _ in counts if value not in values}, key=str)
    lines = [
        f"| {column} | " + " | ".join(snapshot.isoformat() for snapshot in shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for value in values:
        cells = []
        for snapshot in shown:
            n = counts.get((value, snapshot), 0)
            cells.append(f"{n:,} ({n / totals[snapshot]:.0%})" if totals[snapshot] else "0")
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"{totals[s]:,}" for s in shown) + " |")
    return "\n".join(lines)


def _count(conn, sql: str, params: list) -> int:
    # fetchall, not fetchone: duckdb 2.0 keeps a fetchone() result open and refuses the next register().
    return conn.execute(sql, params).fetchall()[0][0]


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
        duplicates = _count(
            conn,
            f"SELECT count(*) FROM (SELECT snapshot_date, customer_key FROM {table} WHERE {in_run} "
            "GROUP BY ALL HAVING count(*) > 1)",
            [dates],
        )
        missing_keys = _count(
            conn, f"SELECT count(*) FROM {table} WHERE {in_run} AND customer_key IS NULL", [dates]
        )
        future_rows = _count(
            conn,
            f"SELECT count(*) FROM {table} WHERE {in_run} AND (last_seen_at >= snapshot_date "
            "OR last_purchase_at >= snapshot_date OR first_seen_at >= snapshot_date OR recency_days < 1)",
            [dates],
        )
        total_rows = warehouse.row_count(conn, FEATURES_TABLE)
        stages = _distribution_markdown(
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


@dg.asset(
    key=RFM_KEY,
    description=(
        "RFM quintile scores (5 = best; recency inverted) of every customer with a purchase before "
        "the snapshot, their RFM code and the named segment of config/rfm_segments.yaml."
    ),
    group_name="models",
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[FEATURES_KEY],
    owners=[OWNER],
    kinds={"duckdb", "sql"},
    code_version=version_of(RFM_LOGIC_VERSION, RFM_CONFIG),
    metadata=table_metadata(RFM_TABLE, column_schema(rfm.RFM_COLUMN_DOCS))
    | {"segment_map_version": RFM_CONFIG.version, "ties": RFM_CONFIG.ties},
    tags={"layer": "models"},
    check_specs=[
        dg.AssetCheckSpec(
            SCORE_RANGE_CHECK,
            asset=RFM_KEY,
            blocking=True,
            description="R, F, M and FM scores are whole numbers from 1 to 5 on every row.",
        ),
        dg.AssetCheckSpec(
            SEGMENT_CHECK,
            asset=RFM_KEY,
            blocking=True,
            description="Every scored customer has a named segment.",
        ),
        dg.AssetCheckSpec(
            COVERAGE_CHECK,
            asset=RFM_KEY,
            description="One row per customer with a purchase in the snapshot's features, no more, no less.",
        ),
    ],
)
def rfm_scores(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    dates = snapshot_dates(context)
    written = {}
    with duckdb.get_connection() as conn:
        if not warehouse.table_columns(conn, FEATURES_TABLE):
            raise dg.Failure(f"{FEATURES_TABLE} does not exist: materialize features/customer_features first")
        source = warehouse.table_ref(FEATURES_TABLE)
        for snapshot in dates:
            purchasers = conn.sql(
                "SELECT snapshot_date, customer_key, recency_days, frequency, monetary_total "
                f"FROM {source} WHERE snapshot_date = ? AND frequency > 0",
                params=[snapshot],
            ).to_arrow_table()
            if purchasers.num_rows == 0:
                context.log.warning(f"no purchasers in {FEATURES_TABLE} as of {snapshot}")
            scores = rfm.score_rfm(purchasers, RFM_CONFIG, conn=conn)
            written[snapshot] = warehouse.replace_partitions(
                conn, RFM_TABLE, scores, "snapshot_date", [snapshot], columns=rfm.RFM_COLUMNS
            )
        table = warehouse.table_ref(RFM_TABLE)
        in_run = "snapshot_date IN (SELECT unnest(?))"
        out_of_range = _count(
            conn,
            f"SELECT count(*) FROM {table} WHERE {in_run} AND NOT coalesce("
            "r_score BETWEEN 1 AND 5 AND f_score BETWEEN 1 AND 5 AND m_score BETWEEN 1 AND 5 "
            "AND fm_score BETWEEN 1 AND 5, false)",
            [dates],
        )
        unnamed = _count(
            conn, f"SELECT count(*) FROM {table} WHERE {in_run} AND rfm_segment IS NULL", [dates]
        )
        purchasers_total = _count(
            conn, f"SELECT count(*) FROM {source} WHERE {in_run} AND frequency > 0", [dates]
        )
        scored_customers = _count(
            conn,
            f"SELECT count(*) FROM {table} r JOIN {source} f USING (snapshot_date, customer_key) "
            "WHERE r.snapshot_date IN (SELECT unnest(?)) AND f.frequency > 0",
            [dates],
        )
        total_rows = warehouse.row_count(conn, RFM_TABLE)
        order = [rule.name for rule in RFM_CONFIG.segments]
        segments = _distribution_markdown(conn, RFM_TABLE, "rfm_segment", dates, order=order)
        profile = _segment_profile(conn, dates[-1], order)
    rows = sum(written.values())
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total_rows,
            "dagster/partition_row_count": rows,
            "snapshots": dg.MetadataValue.json({d.isoformat(): n for d, n in written.items()}),
            "segments": dg.MetadataValue.md(segments),
            "segment_profile_latest": dg.MetadataValue.md(profile),
        }
    )
    yield dg.AssetCheckResult(
        check_name=SCORE_RANGE_CHECK, passed=out_of_range == 0, metadata={"rows_out_of_range": out_of_range}
    )
    yield dg.AssetCheckResult(
        check_name=SEGMENT_CHECK, passed=unnamed == 0, metadata={"rows_without_segment": unnamed}
    )
    yield dg.AssetCheckResult(
        check_name=COVERAGE_CHECK,
        passed=rows == purchasers_total == scored_customers,
        metadata={
            "purchasers": purchasers_total,
            "rows": rows,
            "rows_matching_a_purchaser": scored_customers,
        },
    )


def _segment_profile(conn, snapshot: date, order: list[str]) -> str:
    """What each segment looks like: the table a marketer reads before trusting the names."""
    rows = conn.execute(
        f"SELECT rfm_segment, count(*), avg(recency_days), avg(frequency), avg(monetary_total), "
        f"sum(monetary_total) FROM {warehouse.table_ref(RFM_TABLE)} WHERE snapshot_date = ? GROUP BY 1",
        [snapshot],
    ).fetchall()
    by_name = {row[0]: row[1:] for row in rows}
    revenue = sum(row[5] for row in rows) or 1
    lines = [
        f"Snapshot {snapshot.isoformat()}.",
        "",
        "| segment | customers | mean recency (days) | mean orders | mean revenue | revenue share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in order:
        if name in by_name:
            n, recency, orders, monetary, total = by_name[name]
            lines.append(
                f"| {name} | {n:,} | {recency:.0f} | {orders:.1f} | {monetary:,.2f} | {total / revenue:.0%} |"
            )
    return "\n".join(lines)


feature_assets = [customer_features, rfm_scores]
