"""Ingestion: one multi-asset per source writing `raw.<source>` and `quarantine.<source>`.

A run covers one daily partition or, under a single-run backfill, a whole range; each
partition's rows are replaced, never appended, so re-runs are idempotent.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import CONTRACTS, SourceContract
from segmentation_platform.core import ingestion, warehouse
from segmentation_platform.defs._lib.metadata import (
    OWNER,
    column_schema,
    contract_schema,
    table_metadata,
    version_of,
)
from segmentation_platform.defs._lib.partitions import daily_partitions
from segmentation_platform.defs._lib.resources import LandingZone

INGESTION_LOGIC_VERSION = "1"

_METADATA_DOCS = {
    "_partition_date": ("DATE", "Daily partition = the day in the landing file name"),
    "_source_file": ("VARCHAR", "Landing file the row came from"),
    "_line": ("BIGINT", "Line of the row in its landing file (header = 1)"),
    "_loaded_at": ("TIMESTAMP", "When the row was loaded (UTC)"),
}
_QUARANTINE_DOCS = {
    "_partition_date": _METADATA_DOCS["_partition_date"],
    "_source_file": _METADATA_DOCS["_source_file"],
    "_line": _METADATA_DOCS["_line"],
    "column_name": ("VARCHAR", "Column that failed (NULL when the row itself was malformed)"),
    "reason": ("VARCHAR", "What was wrong"),
    "raw_record": ("VARCHAR", "The raw line as it stood in the file"),
    "_loaded_at": _METADATA_DOCS["_loaded_at"],
}
RECONCILIATION_CHECK = "reconciles_with_landing"
CONTRACT_CHECK = "great_expectations_contract"


def _days(context: dg.AssetExecutionContext) -> list:
    window = context.partition_time_window
    day, days = window.start.date(), []
    while day < window.end.date():
        days.append(day)
        day += timedelta(days=1)
    return days


def build_ingestion_asset(contract: SourceContract) -> dg.AssetsDefinition:
    raw_key = dg.AssetKey(["raw", contract.name])
    quarantine_key = dg.AssetKey(["quarantine", contract.name])
    raw_table, quarantine_table = f"raw.{contract.name}", f"quarantine.{contract.name}"
    code_version = version_of(INGESTION_LOGIC_VERSION, contract)
    kinds = {"duckdb", "csv"}

    @dg.multi_asset(
        name=f"ingest_{contract.name}",
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        group_name="ingestion",
        specs=[
            dg.AssetSpec(
                raw_key,
                description=f"{contract.description} Rows that passed the contract, typed.",
                owners=[OWNER],
                kinds=kinds,
                code_version=code_version,
                metadata=table_metadata(raw_table, contract_schema(contract, _METADATA_DOCS)),
                tags={"layer": "raw"},
            ),
            dg.AssetSpec(
                quarantine_key,
                description=f"Rows of {contract.name} landing files rejected by the contract, one reason each.",
                owners=[OWNER],
                kinds=kinds,
                code_version=code_version,
                metadata=table_metadata(quarantine_table, column_schema(_QUARANTINE_DOCS)),
                tags={"layer": "quarantine"},
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset=raw_key,
                blocking=True,
                description="Landing rows = accepted + quarantined, per partition: nothing silently dropped.",
            ),
            dg.AssetCheckSpec(
                CONTRACT_CHECK,
                asset=raw_key,
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
            warehouse.replace_partitions(
                conn,
                raw_table,
                batch.accepted.to_arrow(),
                "_partition_date",
                days,
                columns=ingestion.raw_table_columns(contract),
            )
            warehouse.replace_partitions(
                conn,
                quarantine_table,
                batch.quarantined.to_arrow(),
                "_partition_date",
                days,
                columns=ingestion.QUARANTINE_COLUMNS,
            )
            accepted = warehouse.count_by(conn, raw_table, "_partition_date", days)
            rejected = warehouse.count_by(conn, quarantine_table, "_partition_date", days)
            total_rows = warehouse.row_count(conn, raw_table)
            quarantine_rows = warehouse.row_count(conn, quarantine_table)
        landing_rows = dict.fromkeys(days, 0)
        for row in (
            batch.landing_counts.group_by("_partition_date")
            .agg(pl.col("landing_rows").sum())
            .iter_rows(named=True)
        ):
            landing_rows[row["_partition_date"]] = row["landing_rows"]
        context.log.info(
            f"{contract.name}: {sum(landing_rows.values())} landing rows in {len(days)} day(s) -> "
            f"{sum(accepted.values())} accepted, {sum(rejected.values())} quarantined"
        )
        yield dg.MaterializeResult(
            asset_key=raw_key,
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
            asset_key=quarantine_key,
            metadata={
                "dagster/row_count": quarantine_rows,
                "dagster/partition_row_count": sum(rejected.values()),
                "top_reasons": dg.MetadataValue.md(_reason_table(batch)),
            },
        )
        mismatches = {
            day.isoformat(): {
                "landing": landing_rows[day],
                "accepted": accepted[day],
                "quarantined": rejected[day],
            }
            for day in days
            if landing_rows[day] != accepted[day] + rejected[day]
        }
        yield dg.AssetCheckResult(
            asset_key=raw_key,
            check_name=RECONCILIATION_CHECK,
            passed=not mismatches,
            metadata={
                "days": len(days),
                "landing_rows": sum(landing_rows.values()),
                "accepted_rows": sum(accepted.values()),
                "quarantined_rows": sum(rejected.values()),
                "mismatched_days": dg.MetadataValue.json(mismatches),
            },
        )
        from segmentation_platform.core.ingestion import validate_with_contract

        outcome = validate_with_contract(contract, batch.accepted.to_pandas())
        yield dg.AssetCheckResult(
            asset_key=raw_key,
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


ingestion_assets = [build_ingestion_asset(contract) for contract in CONTRACTS.values()]
