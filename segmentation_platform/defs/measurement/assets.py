"""Measurement: segment KPIs, acquisition economics, migration, lift vs holdout, and the HTML report.

Outcome metrics read purchases *after* the snapshot, so these assets depend on all raw
purchase partitions (history and outcomes), not only the snapshot's week; re-materialize
older snapshots once later weeks are loaded to fill in pending outcome windows.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import MARKETING_SPEND
from segmentation_platform.core import activation, measurement, reporting, warehouse
from segmentation_platform.core.activation import ActivationConfig
from segmentation_platform.core.warehouse import TableSchema
from segmentation_platform.defs._lib.keys import (
    CHANNEL_KPIS_KEY,
    CHURN_SCORES_KEY,
    CLV_SCORES_KEY,
    CUSTOMER_FEATURES_KEY,
    CUSTOMER_KEY_MAP_KEY,
    EXPORTS_KEY,
    HOLDOUTS_KEY,
    LIFT_KEY,
    MIGRATION_KEY,
    REPORT_KEY,
    RFM_SCORES_KEY,
    SEGMENT_ASSIGNMENTS_KEY,
    SEGMENT_KPIS_KEY,
    raw_key,
)
from segmentation_platform.defs._lib.metadata import OWNER, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots
from segmentation_platform.defs.activation.assets import OutputFolders

MEASUREMENT_LOGIC_VERSION = "2"  # 2: order-free exact sums
GROUP = "measurement"
CODE_VERSION = version_of(
    MEASUREMENT_LOGIC_VERSION,
    measurement.SHORT_WINDOW_DAYS,
    measurement.LONG_WINDOW_DAYS,
    measurement.CAC_WINDOW_DAYS,
)

COVERS_SEGMENTS_CHECK = "covers_every_assigned_customer"
FLOWS_CONSERVE_CHECK = "flows_conserve_customers"
INTERVALS_CHECK = "intervals_contain_estimates"

_COMMON = {
    "owners": [OWNER],
    "code_version": CODE_VERSION,
    "tags": {"layer": "measurement"},
}


def _all_partitions(*keys: dg.AssetKey) -> list[dg.AssetDep]:
    """Outcomes come from the weeks after a snapshot and history from before: every raw partition counts."""
    return [dg.AssetDep(key, partition_mapping=dg.AllPartitionMapping()) for key in keys]


def _purchase_deps() -> list[dg.AssetDep]:
    return _all_partitions(*(raw_key(c.name) for c in measurement.PURCHASE_SOURCES))


def _spec(schema: TableSchema, key: dg.AssetKey, deps: list) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        description=schema.description,
        kinds={"duckdb", "python"},
        metadata=schema_metadata(schema),
        deps=deps,
        **_COMMON,
    )


def _snapshot_table(
    schema: TableSchema, key: dg.AssetKey, deps: list, check: str, check_description: str
) -> dict:
    """`dg.asset` arguments of a weekly table asset with one check."""
    return {
        "key": key,
        "description": schema.description,
        "group_name": GROUP,
        "kinds": {"duckdb", "python"},
        "partitions_def": weekly_snapshots,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "pool": "duckdb",
        "deps": deps,
        "metadata": schema_metadata(schema),
        "check_specs": [dg.AssetCheckSpec(check, asset=key, description=check_description)],
        **_COMMON,
    }


def _write(conn, schema: TableSchema, frame: pd.DataFrame, snapshot) -> int:
    return warehouse.replace_partitions(
        conn, schema.table, frame, schema.partition_column, [snapshot], columns=schema.sql_columns
    )


def build_measurement_assets(activation_config: ActivationConfig) -> list:
    """KPIs, migration, lift (against `activation_config`'s holdout experiments) and the HTML report."""
    return [
        _build_kpis(),
        _build_migration(),
        _build_lift(activation_config),
        _build_report(),
    ]


def _build_kpis() -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="segment_and_channel_kpis",
        group_name=GROUP,
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        specs=[
            _spec(
                measurement.SEGMENT_KPIS_SCHEMA,
                SEGMENT_KPIS_KEY,
                [
                    SEGMENT_ASSIGNMENTS_KEY,
                    CLV_SCORES_KEY,
                    CHURN_SCORES_KEY,
                    CUSTOMER_KEY_MAP_KEY,
                    *_purchase_deps(),
                ],
            ),
            _spec(
                measurement.CHANNEL_KPIS_SCHEMA,
                CHANNEL_KPIS_KEY,
                [
                    CLV_SCORES_KEY,
                    CUSTOMER_FEATURES_KEY,
                    CUSTOMER_KEY_MAP_KEY,
                    *_purchase_deps(),
                    *_all_partitions(raw_key(MARKETING_SPEND.name)),
                ],
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                COVERS_SEGMENTS_CHECK,
                asset=SEGMENT_KPIS_KEY,
                description="Customers summed over segments = customers in segments.assignments, per snapshot.",
            )
        ],
    )
    def segment_and_channel_kpis(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        mismatches, segment_rows, channel_rows, pending = {}, 0, 0, []
        with duckdb.get_connection() as conn:
            for snapshot in snapshot_dates(context):
                kpis = measurement.segment_kpis(conn, snapshot)
                segment_rows += _write(conn, measurement.SEGMENT_KPIS_SCHEMA, kpis, snapshot)
                channel_rows += _write(
                    conn, measurement.CHANNEL_KPIS_SCHEMA, measurement.channel_kpis(conn, snapshot), snapshot
                )
                mismatch = measurement.kpis_cover_assignments(conn, snapshot, kpis)
                if mismatch:
                    mismatches[snapshot.isoformat()] = mismatch
                if kpis["note"].notna().any():
                    pending.append(snapshot.isoformat())
            totals = {
                schema.table: warehouse.row_count(conn, schema.table)
                for schema in (measurement.SEGMENT_KPIS_SCHEMA, measurement.CHANNEL_KPIS_SCHEMA)
            }
        yield dg.MaterializeResult(
            asset_key=SEGMENT_KPIS_KEY,
            metadata={
                "dagster/row_count": totals[measurement.SEGMENT_KPIS_SCHEMA.table],
                "dagster/partition_row_count": segment_rows,
                "snapshots_with_pending_outcomes": ", ".join(pending) or "none",
            },
        )
        yield dg.MaterializeResult(
            asset_key=CHANNEL_KPIS_KEY,
            metadata={
                "dagster/row_count": totals[measurement.CHANNEL_KPIS_SCHEMA.table],
                "dagster/partition_row_count": channel_rows,
            },
        )
        yield dg.AssetCheckResult(
            asset_key=SEGMENT_KPIS_KEY,
            check_name=COVERS_SEGMENTS_CHECK,
            passed=not mismatches,
            metadata={"mismatches": dg.MetadataValue.json(mismatches)},
        )

    return segment_and_channel_kpis


def _build_migration() -> dg.AssetsDefinition:
    schema = measurement.MIGRATION_SCHEMA

    @dg.asset(
        **_snapshot_table(
            schema,
            MIGRATION_KEY,
            [
                dg.AssetDep(
                    SEGMENT_ASSIGNMENTS_KEY, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1)
                )
            ],
            FLOWS_CONSERVE_CHECK,
            "Flows into each segment add up to its customers now; flows out, to its customers before.",
        )
    )
    def migration(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        broken, rows = {}, 0
        with duckdb.get_connection() as conn:
            for snapshot in snapshot_dates(context):
                frame = measurement.migration_matrix(conn, snapshot)
                rows += _write(conn, schema, frame, snapshot)
                mismatch = measurement.flows_conserve_customers(conn, snapshot, frame)
                if mismatch:
                    broken[snapshot.isoformat()] = mismatch
            total = warehouse.row_count(conn, schema.table)
        yield dg.MaterializeResult(metadata={"dagster/row_count": total, "dagster/partition_row_count": rows})
        yield dg.AssetCheckResult(
            check_name=FLOWS_CONSERVE_CHECK,
            passed=not broken,
            metadata={"broken": dg.MetadataValue.json(broken)},
        )

    return migration


def _build_lift(activation_config: ActivationConfig) -> dg.AssetsDefinition:
    schema = measurement.LIFT_SCHEMA
    experiments = activation_config.experiments

    @dg.asset(
        **_snapshot_table(
            schema,
            LIFT_KEY,
            [HOLDOUTS_KEY, SEGMENT_ASSIGNMENTS_KEY, CUSTOMER_KEY_MAP_KEY, *_purchase_deps()],
            INTERVALS_CHECK,
            "Every measured lift lies inside its own confidence interval (low <= estimate <= high).",
        )
    )
    def lift(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        bad, rows, tables = [], 0, []
        with duckdb.get_connection() as conn:
            for snapshot in snapshot_dates(context):
                table = measurement.lift(conn, snapshot, experiments)
                rows += _write(conn, schema, table, snapshot)
                bad += measurement.lifts_outside_intervals(table, snapshot)
                tables.append(table)
            total = warehouse.row_count(conn, schema.table)
        latest = tables[-1] if tables else None
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "dagster/partition_row_count": rows,
                "latest_snapshot": dg.MetadataValue.md(_lift_markdown(latest))
                if latest is not None
                else "none",
            }
        )
        yield dg.AssetCheckResult(
            check_name=INTERVALS_CHECK, passed=not bad, metadata={"bad": dg.MetadataValue.json(bad)}
        )

    return lift


def _lift_markdown(table) -> str:
    if table.empty:
        return "No segment under a holdout experiment."
    lines = ["| segment | treated | holdout | conversion lift | 95% CI |", "|---|---:|---:|---:|---|"]
    for r in table.to_dict("records"):
        if r["conversion_lift"] != r["conversion_lift"]:
            lines.append(
                f"| {r['action_segment']} | {r['treatment_customers']} | {r['holdout_customers']} | pending | |"
            )
            continue
        lines.append(
            f"| {r['action_segment']} | {r['treatment_customers']} | {r['holdout_customers']} "
            f"| {r['conversion_lift'] * 100:+.1f} pp | {r['conversion_lift_low'] * 100:+.1f} to "
            f"{r['conversion_lift_high'] * 100:+.1f} pp |"
        )
    return "\n".join(lines)


def _build_report() -> dg.AssetsDefinition:
    @dg.asset(
        key=REPORT_KEY,
        description="Self-contained offline HTML report per snapshot (inline SVG charts, no scripts or network): "
        "segment sizes and value, CLTV distribution, RFM grid, migration flows, lift with intervals, "
        "acquisition economics and exports. Written to <reports>/<snapshot>/report.html.",
        group_name=GROUP,
        kinds={"html", "python"},
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[
            SEGMENT_KPIS_KEY,
            CHANNEL_KPIS_KEY,
            MIGRATION_KEY,
            LIFT_KEY,
            EXPORTS_KEY,
            CLV_SCORES_KEY,
            RFM_SCORES_KEY,
        ],
        **_COMMON,
    )
    def report_html(context: dg.AssetExecutionContext, duckdb: DuckDBResource, output_folders: OutputFolders):
        written: list[Path] = []
        summary = ""
        with duckdb.get_connection() as conn:
            for snapshot in snapshot_dates(context):
                data = reporting.load_report_data(conn, snapshot)
                path = output_folders.reports_root / snapshot.isoformat() / "report.html"
                path.parent.mkdir(parents=True, exist_ok=True)
                activation.write_atomically(path, reporting.render_report(data).encode("utf-8"))
                written.append(path.resolve())
                summary = reporting.markdown_summary(data)
        latest = written[-1]
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.path(str(latest)),
                "report_url": dg.MetadataValue.url(latest.as_uri()),
                "reports_written": len(written),
                "summary": dg.MetadataValue.md(summary),
            }
        )

    return report_html
