"""RFM scores: weekly quintile scores and named segments in `models.rfm_scores`."""

from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import warehouse
from segmentation_platform.core.models import rfm
from segmentation_platform.core.warehouse import tables
from segmentation_platform.defs._lib.keys import CUSTOMER_FEATURES_KEY, RFM_SCORES_KEY
from segmentation_platform.defs._lib.metadata import (
    OWNER,
    count_rows,
    distribution_markdown,
    schema_metadata,
    version_of,
)
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots

RFM_LOGIC_VERSION = "1"
RFM_TABLE = rfm.RFM_SCORES_SCHEMA.table
FEATURES_TABLE = tables.CUSTOMER_FEATURES

SCORE_RANGE_CHECK = "scores_between_1_and_5"
SEGMENT_CHECK = "every_row_has_a_segment"
COVERAGE_CHECK = "scores_every_purchaser"


def build_rfm_assets(config: rfm.RfmConfig) -> list:
    """The RFM asset (with its checks) for one segment map."""
    return [_rfm_scores_asset(config)]


def _rfm_scores_asset(config: rfm.RfmConfig) -> dg.AssetsDefinition:
    @dg.asset(
        key=RFM_SCORES_KEY,
        description=(
            "RFM quintile scores (5 = best; recency inverted) of every customer with a purchase before "
            "the snapshot, their RFM code and the named segment of config/rfm_segments.yaml."
        ),
        group_name="models",
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[CUSTOMER_FEATURES_KEY],
        owners=[OWNER],
        kinds={"duckdb", "sql"},
        code_version=version_of(RFM_LOGIC_VERSION, config),
        metadata=schema_metadata(rfm.RFM_SCORES_SCHEMA)
        | {"segment_map_version": config.version, "ties": config.ties},
        tags={"layer": "models"},
        check_specs=[
            dg.AssetCheckSpec(
                SCORE_RANGE_CHECK,
                asset=RFM_SCORES_KEY,
                blocking=True,
                description="R, F, M and FM scores are whole numbers from 1 to 5 on every row.",
            ),
            dg.AssetCheckSpec(
                SEGMENT_CHECK,
                asset=RFM_SCORES_KEY,
                blocking=True,
                description="Every scored customer has a named segment.",
            ),
            dg.AssetCheckSpec(
                COVERAGE_CHECK,
                asset=RFM_SCORES_KEY,
                description="One row per customer with a purchase in the snapshot's features, no more, no less.",
            ),
        ],
    )
    def rfm_scores(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        written = {}
        with duckdb.get_connection() as conn:
            if not warehouse.table_columns(conn, FEATURES_TABLE):
                raise dg.Failure(
                    f"{FEATURES_TABLE} does not exist: materialize features/customer_features first"
                )
            source = warehouse.table_ref(FEATURES_TABLE)
            for snapshot in dates:
                purchasers = conn.sql(
                    "SELECT snapshot_date, customer_key, recency_days, frequency, monetary_total "
                    f"FROM {source} WHERE snapshot_date = ? AND frequency > 0",
                    params=[snapshot],
                ).to_arrow_table()
                if purchasers.num_rows == 0:
                    context.log.warning(f"no purchasers in {FEATURES_TABLE} as of {snapshot}")
                scores = rfm.score_rfm(purchasers, config, conn=conn)
                written[snapshot] = warehouse.replace_partitions(
                    conn,
                    RFM_TABLE,
                    scores,
                    "snapshot_date",
                    [snapshot],
                    columns=rfm.RFM_SCORES_SCHEMA.sql_columns,
                )
            table = warehouse.table_ref(RFM_TABLE)
            in_run = "snapshot_date IN (SELECT unnest(?))"
            out_of_range = count_rows(
                conn,
                f"SELECT count(*) FROM {table} WHERE {in_run} AND NOT coalesce("
                "r_score BETWEEN 1 AND 5 AND f_score BETWEEN 1 AND 5 AND m_score BETWEEN 1 AND 5 "
                "AND fm_score BETWEEN 1 AND 5, false)",
                [dates],
            )
            unnamed = count_rows(
                conn, f"SELECT count(*) FROM {table} WHERE {in_run} AND rfm_segment IS NULL", [dates]
            )
            purchasers_total = count_rows(
                conn, f"SELECT count(*) FROM {source} WHERE {in_run} AND frequency > 0", [dates]
            )
            scored_customers = count_rows(
                conn,
                f"SELECT count(*) FROM {table} r JOIN {source} f USING (snapshot_date, customer_key) "
                "WHERE r.snapshot_date IN (SELECT unnest(?)) AND f.frequency > 0",
                [dates],
            )
            total_rows = warehouse.row_count(conn, RFM_TABLE)
            order = [rule.name for rule in config.segments]
            segments = distribution_markdown(conn, RFM_TABLE, "rfm_segment", dates, order=order)
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
            check_name=SCORE_RANGE_CHECK,
            passed=out_of_range == 0,
            metadata={"rows_out_of_range": out_of_range},
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

    return rfm_scores


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
