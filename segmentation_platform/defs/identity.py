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
from segmentation_platform.core.identity_config import load_identity_config
from segmentation_platform.defs.metadata import OWNER, column_schema, table_metadata, version_of

IDENTITY_LOGIC_VERSION = "1"
IDENTITY_CONFIG = load_identity_config()
SCHEMA = "identity"
DESCRIPTIONS = {
    "records": "Every person-identifying source record (source, source_id), normalized: emails trimmed and "
    "lower-cased, phones E.164, names Unicode-folded, postcodes canonical; with its customer_key.",
    "links": "Evidence between records: deterministic (email, phone, loyalty id, cross-references) and "
    "probabilistic Splink links with match probability and the comparison levels behind them.",
    "customer_key_map": "source, source_id -> customer_key. Keys are stable across runs: the oldest key "
    "survives a merge, a split mints a new key.",
    "changelog": "Append-only log of every new key, merge, split and retirement with its evidence.",
    "customers": "Golden record per customer_key by survivorship (most trusted / recent / complete source per "
    "field), first seen, sources present, consent status.",
    "review_flags": "Clusters the over-merge guard split or flagged (size cap, conflicting birth dates, ...).",
    "identifiers": "Every normalized email, phone and loyalty id a record carried, with how many records share "
    "it and whether it was too common (hub) or ambiguous (shared by different people) to link on.",
    "model": "Versioned Splink model artefacts (settings JSON) with training notes.",
    "match_weights": "Per comparison level m, u and match weight of each model version: why records matched.",
}
EVERY_RECORD_CHECK = "every_record_has_one_key"
CLUSTER_CAP_CHECK = "no_cluster_above_cap"
STABILITY_CHECK = "keys_stable_unless_logged"
PERSON_SOURCES = [c.name for c in CONTRACTS.values() if c.person_ref]


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey([SCHEMA, name])


def _spec(name: str) -> dg.AssetSpec:
    columns = identity.OUTPUT_TABLES[name]
    return dg.AssetSpec(
        _key(name),
        description=DESCRIPTIONS[name],
        owners=[OWNER],
        kinds={"duckdb", "splink"},
        code_version=version_of(IDENTITY_LOGIC_VERSION, IDENTITY_CONFIG),
        metadata=table_metadata(
            f"{SCHEMA}.{name}", column_schema({c: (t, "") for c, t in columns.items()}, pii=_PII_COLUMNS)
        ),
        tags={"layer": "identity"},
        deps=[dg.AssetKey(["raw", source]) for source in PERSON_SOURCES],
    )


_PII_COLUMNS = {
    "first_name",
    "last_name",
    "email",
    "email_local",
    "phone",
    "address",
    "postcode",
    "birth_date",
    "display_first_name",
    "display_last_name",
    "display_address",
    "value",
}


@dg.multi_asset(
    name="resolve_identities",
    group_name="identity",
    pool="duckdb",
    specs=[_spec(name) for name in DESCRIPTIONS],
    check_specs=[
        dg.AssetCheckSpec(
            EVERY_RECORD_CHECK,
            asset=_key("customer_key_map"),
            blocking=True,
            description="Every source record maps to exactly one customer_key.",
        ),
        dg.AssetCheckSpec(
            CLUSTER_CAP_CHECK,
            asset=_key("customer_key_map"),
            blocking=True,
            description="No customer holds more records than the configured cluster size cap.",
        ),
        dg.AssetCheckSpec(
            STABILITY_CHECK,
            asset=_key("customer_key_map"),
            blocking=True,
            description="A record that existed before keeps its key unless this run logged a merge or split.",
        ),
    ],
)
def resolve_identities(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.get_connection() as conn:
        key_map = f"{SCHEMA}.customer_key_map"
        previous = (
            conn.sql(f"SELECT source, source_id, customer_key FROM {key_map}").to_arrow_table()
            if warehouse.table_exists(conn, key_map)
            else None
        )
        result = identity.resolve_identities(conn, IDENTITY_CONFIG, now=now)
        counts = {
            name: conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            for name, table in result.tables.items()
        }
        unexplained = _unexplained_key_changes(conn, previous, key_map, now) if previous is not None else 0
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float) and v is not None}
    context.log.info(f"identity: {counts['records']} records -> {counts['customers']} customers")
    for name in DESCRIPTIONS:
        metadata = {"dagster/row_count": counts[name]}
        if name == "customer_key_map":
            metadata |= {k: v for k, v in metrics.items() if not k.startswith("seconds_")}
        if name == "model" and result.model_version:
            metadata["model_version"] = result.model_version
        yield dg.MaterializeResult(asset_key=_key(name), metadata=metadata)
    for check_name, outcome in (
        (EVERY_RECORD_CHECK, result.checks["every_record_has_one_key"]),
        (CLUSTER_CAP_CHECK, result.checks["cluster_size_cap"]),
    ):
        yield dg.AssetCheckResult(
            asset_key=_key("customer_key_map"),
            check_name=check_name,
            passed=outcome.passed,
            metadata={k: v for k, v in outcome.counts.items() if isinstance(v, int | float | str)},
        )
    yield dg.AssetCheckResult(
        asset_key=_key("customer_key_map"),
        check_name=STABILITY_CHECK,
        passed=unexplained == 0,
        metadata={"records_changed_without_logged_merge_or_split": unexplained},
    )


def _unexplained_key_changes(conn, previous, key_map: str, now: datetime) -> int:
    """Records whose key changed although this run logged no merge or split for their new key."""
    conn.register("_previous_key_map", previous)
    try:
        return conn.execute(
            f"""
            SELECT count(*)
            FROM _previous_key_map p
            JOIN {key_map} c USING (source, source_id)
            WHERE p.customer_key <> c.customer_key
              AND c.customer_key NOT IN (
                  SELECT customer_key FROM {SCHEMA}.changelog
                  WHERE changed_at = ? AND change_type IN ('merge', 'split', 'new')
              )
            """,
            [now],
        ).fetchall()[0][0]
    finally:
        conn.unregister("_previous_key_map")


identity_assets = [resolve_identities]
