"""Identity resolution: one multi-asset writing every `identity.*` table in one transaction.

Cumulative (unpartitioned): each run resolves all person records loaded so far, keeps
the previous run's keys (oldest key survives a merge, a split mints a new one) and
appends every change to `identity.changelog`.
"""

from datetime import UTC, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import identity, warehouse
from segmentation_platform.core.warehouse import tables
from segmentation_platform.defs._lib.keys import CUSTOMER_KEY_MAP_KEY, key_of, raw_key
from segmentation_platform.defs._lib.metadata import OWNER, schema_metadata, version_of

IDENTITY_LOGIC_VERSION = "1"
EVERY_RECORD_CHECK = "every_record_has_one_key"
CLUSTER_CAP_CHECK = "no_cluster_above_cap"
STABILITY_CHECK = "keys_stable_unless_logged"
PERSON_SOURCES = [c.name for c in CONTRACTS.values() if c.person_ref]


def identity_code_version(config: identity.IdentityConfig) -> str:
    """Logic version and the settings that change results; runtime knobs (memory) stay out."""
    return version_of(IDENTITY_LOGIC_VERSION, config.result_settings())


def build_identity_assets(config: identity.IdentityConfig) -> list:
    """The `resolve_identities` multi-asset (every identity table, with its three checks)."""
    code_version = identity_code_version(config)
    specs = [
        dg.AssetSpec(
            key_of(schema.table),
            description=schema.description,
            owners=[OWNER],
            kinds={"duckdb", "splink"},
            code_version=code_version,
            metadata=schema_metadata(schema),
            tags={"layer": "identity"},
            deps=[raw_key(source) for source in PERSON_SOURCES],
        )
        for schema in identity.TABLE_SCHEMAS
    ]

    @dg.multi_asset(
        name="resolve_identities",
        group_name="identity",
        pool="duckdb",
        specs=specs,
        check_specs=[
            dg.AssetCheckSpec(
                EVERY_RECORD_CHECK,
                asset=CUSTOMER_KEY_MAP_KEY,
                blocking=True,
                description="Every source record maps to exactly one customer_key.",
            ),
            dg.AssetCheckSpec(
                CLUSTER_CAP_CHECK,
                asset=CUSTOMER_KEY_MAP_KEY,
                blocking=True,
                description="No customer holds more records than the configured cluster size cap.",
            ),
            dg.AssetCheckSpec(
                STABILITY_CHECK,
                asset=CUSTOMER_KEY_MAP_KEY,
                blocking=True,
                description="A record that existed before keeps its key unless this run logged a merge or split.",
            ),
        ],
    )
    def resolve_identities(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        now = datetime.now(UTC).replace(tzinfo=None)
        with duckdb.get_connection() as conn:
            previous = (
                conn.sql(
                    f"SELECT source, source_id, customer_key FROM {tables.CUSTOMER_KEY_MAP}"
                ).to_arrow_table()
                if warehouse.table_exists(conn, tables.CUSTOMER_KEY_MAP)
                else None
            )
            result = identity.resolve_identities(conn, config, now=now)
            counts = {
                schema.table: warehouse.row_count(conn, schema.table) for schema in identity.TABLE_SCHEMAS
            }
            stability = (
                identity.check_keys_stable_unless_logged(conn, previous, now)
                if previous is not None
                else None
            )
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float) and v is not None}
        context.log.info(
            f"identity: {counts[tables.IDENTITY_RECORDS]} records -> {counts[tables.CUSTOMERS]} customers"
        )
        for table, n_rows in counts.items():
            metadata = {"dagster/row_count": n_rows}
            if table == tables.CUSTOMER_KEY_MAP:
                metadata |= {k: v for k, v in metrics.items() if not k.startswith("seconds_")}
            if table == tables.IDENTITY_MODEL and result.model_version:
                metadata["model_version"] = result.model_version
            yield dg.MaterializeResult(asset_key=key_of(table), metadata=metadata)
        for check_name, outcome in (
            (EVERY_RECORD_CHECK, result.checks["every_record_has_one_key"]),
            (CLUSTER_CAP_CHECK, result.checks["cluster_size_cap"]),
        ):
            yield dg.AssetCheckResult(
                asset_key=CUSTOMER_KEY_MAP_KEY,
                check_name=check_name,
                passed=outcome.passed,
                metadata={k: v for k, v in outcome.counts.items() if isinstance(v, int | float | str)},
            )
        yield dg.AssetCheckResult(
            asset_key=CUSTOMER_KEY_MAP_KEY,
            check_name=STABILITY_CHECK,
            passed=stability is None or stability.passed,
            metadata=stability.counts if stability else {"records_changed_without_logged_merge_or_split": 0},
        )

    return [resolve_identities]
