"""Ingestion: one multi-asset per source writing `raw.<source>` and `quarantine.<source>`.

A run covers one daily partition or, under a single-run backfill, a whole range; each
partition's rows are replaced, never appended, so re-runs are idempotent.
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import CONTRACTS, SourceContract
from segmentation_platform.core import ingestion, warehouse
from segmentation_platform.core.warehouse import TableSchema
from segmentation_platform.defs._lib.keys import quarantine_key, raw_key
from segmentation_platform.defs._lib.metadata import OWNER, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import daily_partitions
from segmentation_platform.defs._lib.resources import LandingZone

INGESTION_LOGIC_VERSION = "1"
RECONCILIATION_CHECK = "reconciles_with_landing"
CONTRACT_CHECK = "great_expectations_contract"


def _days(context: dg.AssetExecutionContext) -> list:
    window = context.partition_time_window
    day, days = window.start.date(), []
    while day < window.end.date():
        days.append(day)
        day += timedelta(days=1)
    return days


def _spec(schema: TableSchema, key: dg.AssetKey, code_version: str, layer: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        description=schema.description,
        owners=[OWNER],
        kinds={"duckdb", "csv"},
        code_version=code_version,
        metadata=schema_metadata(schema),
        tags={"layer": layer},
    )


def _build_source_asset(contract: SourceContract) -> dg.AssetsDefinition:
    raw, quarantine = ingestion.raw_schema(contract), ingestion.quarantine_schema(contract.name)
    raw_asset, quarantine_asset = raw_key(contract.name), quarantine_key(contract.name)
    code_version = version_of(INGESTION_LOGIC_VERSION, contract)

    @dg.multi_asset(
        name=f"ingest_{contract.name}",
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        group_name="ingestion",
        specs=[
            _spec(raw, raw_asset, code_version, "raw"),
            _spec(quarantine, quarantine_asset, code_version, "quarantine"),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset=raw_asset,
                blocking=True,
                description="Landing rows = accepted + quarantined, per partition: nothing silently dropped.",
            ),
            dg.AssetCheckSpec(
                CONTRACT_CHECK,
                asset=raw_asset,
                description="great-expectations suite derived from the source contract.",
            ),
        ],
    )
    def ingest(context: dg.AssetExecutionContext, duckdb: DuckDBResource, landing: LandingZone):
        days = _days(context)
        files = {day: ingestion.landing_files(landing.root, contract.name, day) for day in days}
        batch = ingestion.parse_landing_files(
            contract, files, loaded_at=datetime.now(UTC).replace(tzinfo=None), relative_to=landing.root
        )
        with duckdb.get_connection() as conn:
            for schema, frame in ((raw, batch.accepted), (quarantine, batch.quarantined)):
                warehouse.replace_partitions(
                    conn,
                    schema.table,
                    frame.to_arrow(),
                    schema.partition_column,
                    days,
                    columns=schema.sql_columns,
                )
            accepted = warehouse.count_by(conn, raw.table, raw.partition_column, days)
            rejected = warehouse.count_by(conn, quarantine.table, quarantine.partition_column, days)
            total_rows = warehouse.row_count(conn, raw.table)
            quarantine_rows = warehouse.row_count(conn, quarantine.table)
        reconciliation = ingestion.reconcile_with_landing(batch.landing_counts, accepted, rejected, days)
        landing_rows = reconciliation.landing
        context.log.info(
            f"{contract.name}: {sum(landing_rows.values())} landing rows in {len(days)} day(s) -> "
            f"{sum(accepted.values())} accepted, {sum(rejected.values())} quarantined"
        )
        yield dg.MaterializeResult(
            asset_key=raw_asset,
            metadata={
                "dagster/row_count": total_rows,
                "dagster/partition_row_count": sum(accepted.values()),
                "accepted_rows": sum(accepted.values()),
                "quarantined_rows": sum(rejected.values()),
                "landing_files": sum(len(f) for f in files.values()),
                "ignored_columns": ", ".join(batch.ignored_columns) or "none",
            },
        )
        yield dg.MaterializeResult(
            asset_key=quarantine_asset,
            metadata={
                "dagster/row_count": quarantine_rows,
                "dagster/partition_row_count": sum(rejected.values()),
                "top_reasons": dg.MetadataValue.md(_reason_table(batch)),
            },
        )
        yield dg.AssetCheckResult(
            asset_key=raw_asset,
            check_name=RECONCILIATION_CHECK,
            passed=reconciliation.passed,
            metadata={
                "days": len(days),
                "landing_rows": sum(landing_rows.values()),
                "accepted_rows": sum(accepted.values()),
                "quarantined_rows": sum(rejected.values()),
                "mismatched_days": dg.MetadataValue.json(reconciliation.mismatches),
            },
        )
        outcome = ingestion.validate_with_contract(contract, batch.accepted.to_pandas())
        yield dg.AssetCheckResult(
            asset_key=raw_asset,
            check_name=CONTRACT_CHECK,
            passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"expectations": outcome.evaluated, "failed": dg.MetadataValue.json(outcome.failed)},
        )

    return ingest


def _reason_table(batch: ingestion.ParsedBatch) -> str:
    if batch.quarantined.is_empty():
        return "No rows quarantined."
    top = batch.quarantined.group_by("column_name").len().sort("len", descending=True).head(10).iter_rows()
    lines = ["| column | rows |", "|---|---|"]
    lines += [f"| {column or '(row shape)'} | {count} |" for column, count in top]
    return "\n".join(lines)


def build_ingestion_assets(contracts: Iterable[SourceContract] = CONTRACTS.values()) -> list:
    """One `ingest_<source>` multi-asset (raw + quarantine tables, with their two checks) per contract."""
    return [_build_source_asset(contract) for contract in contracts]
