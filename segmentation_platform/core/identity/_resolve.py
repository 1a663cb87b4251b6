"""Identity resolution: one stable customer key per person across every source.

Entry point: `resolve_identities(conn, ...)`. It reads the raw warehouse tables
(`raw.web_orders`, `raw.pos_transactions`, `raw.crm_contacts`, `raw.support_tickets`,
`raw.email_events`; any may be absent) and WRITES its outputs itself into schema
`identity` of the same DuckDB connection, in one transaction at the end, so a failed run
leaves the previous outputs intact. It returns an `IdentityResult` with the table names,
the model artefact and run metrics. Intermediate tables live in an in-memory catalog
attached for the run (`identity_scratch`) and never touch the file.

The output tables and their columns are declared in `_tables.py` (`TABLE_SCHEMAS`); each
is written exactly as declared. All are replaced on each run except `identity.changelog`,
`identity.model` and `identity.match_weights`, which are appended to.

The key map of the previous run is read from `identity.customer_key_map` (or passed in),
which is what keeps keys stable; see `_keys` for the rules.
"""

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from segmentation_platform.core.identity._config import IdentityConfig, load_identity_config
from segmentation_platform.core.identity._golden import build_customers
from segmentation_platform.core.identity._graph import build_links, cluster_records, find_shared_identifiers
from segmentation_platform.core.identity._keys import assign_keys, highest_issued_sequence
from segmentation_platform.core.identity._model import LinkageModel, score_pairs
from segmentation_platform.core.identity._quality import (
    CheckResult,
    check_cluster_size_cap,
    check_every_record_has_one_key,
)
from segmentation_platform.core.identity._records import arrow_to_table, build_records
from segmentation_platform.core.identity._tables import (
    CUSTOMER_KEY_MAP_SCHEMA,
    CUSTOMERS_SCHEMA,
    IDENTITY_CHANGELOG_SCHEMA,
    IDENTITY_IDENTIFIERS_SCHEMA,
    IDENTITY_LINKS_SCHEMA,
    IDENTITY_MATCH_WEIGHTS_SCHEMA,
    IDENTITY_MODEL_SCHEMA,
    IDENTITY_RECORDS_SCHEMA,
    IDENTITY_REVIEW_FLAGS_SCHEMA,
    TABLE_SCHEMAS,
)
from segmentation_platform.core.warehouse import TableSchema, quote, tables

SCRATCH = "identity_scratch"
USE_WAREHOUSE_KEY_MAP = "warehouse"
SCHEMA = tables.CUSTOMER_KEY_MAP.split(".")[0]
_ARROW_TYPES = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BOOLEAN": pa.bool_(), "DOUBLE": pa.float64()}


@dataclass
class IdentityResult:
    """What a run wrote and how it went; `tables` maps a short name (`records`) to the
    table's fully qualified name."""

    tables: dict[str, str]
    model_version: str | None
    model_json: str | None
    metrics: dict[str, Any]
    checks: dict[str, CheckResult] = field(default_factory=dict)

    def frame(self, conn: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
        return conn.execute(f"SELECT * FROM {self.tables[name]}").df()


def resolve_identities(
    conn: duckdb.DuckDBPyConnection,
    config: IdentityConfig | None = None,
    now: dt.datetime | None = None,
    previous_key_map: pd.DataFrame | pa.Table | str | None = USE_WAREHOUSE_KEY_MAP,
    model_json: str | None = None,
) -> IdentityResult:
    """Resolve every raw person record to a stable customer key and write `identity.*`.

    previous_key_map: "warehouse" (default) reads `identity.customer_key_map` when it
    exists; a DataFrame/Arrow table or a table name supplies one; None starts afresh
    (every cluster gets a new key — only for a first run or a deliberate reset).
    model_json: a Splink model JSON to score with instead of training (e.g. a
    `settings_json` of `identity.model`). With fewer records than
    `probabilistic.min_records_to_train`, the newest stored model is used, else the
    packaged default model.
    """
    config = config or load_identity_config()
    now = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    catalog = conn.execute("SELECT current_database()").fetchall()[0][0]
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        timings[f"seconds_{stage}"] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    attached = {row[0] for row in conn.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    if SCRATCH in attached:
        conn.execute(f"DETACH {SCRATCH}")
    conn.execute(f"ATTACH ':memory:' AS {SCRATCH}")
    previous_memory_limit = _apply_memory_limit(conn, config.runtime.duckdb_memory_limit)
    try:
        _adopt_legacy_changelog(conn, catalog)
        previous_map = _previous_key_map(conn, previous_key_map, catalog)
        changelog_table = (
            _qualified(catalog, tables.IDENTITY_CHANGELOG)
            if _table_exists(conn, catalog, tables.IDENTITY_CHANGELOG)
            else None
        )
        record_counts = build_records(conn, catalog, SCRATCH, config, now.date())
        lap("records")
        find_shared_identifiers(conn, SCRATCH, config)
        lap("shared_identifiers")
        model, n_scored = score_pairs(
            conn, SCRATCH, config, model_json, fallback_model_json=_latest_stored_model(conn, catalog)
        )
        lap("probabilistic")
        link_counts = build_links(conn, SCRATCH, config)
        lap("links")
        cluster_counts = cluster_records(conn, SCRATCH, config)
        lap("clustering")
        highest = highest_issued_sequence(conn, previous_map, changelog_table, config.keys.prefix)
        key_counts = assign_keys(conn, SCRATCH, config, previous_map, highest, now)
        lap("keys")
        n_customers = build_customers(conn, SCRATCH, config)
        lap("golden")
        _write_outputs(conn, catalog, model, config, now)
        lap("write")
    finally:
        conn.execute(f"DETACH {SCRATCH}")
        _apply_memory_limit(conn, previous_memory_limit)

    written = {schema.table.split(".")[1]: _qualified(catalog, schema.table) for schema in TABLE_SCHEMAS}
    checks = {
        "every_record_has_one_key": check_every_record_has_one_key(
            conn, written["records"], written["customer_key_map"]
        ),
        "cluster_size_cap": check_cluster_size_cap(
            conn, config.clustering.max_cluster_size, written["customer_key_map"]
        ),
    }
    lap("checks")
    metrics: dict[str, Any] = {
        "records": sum(record_counts.values()),
        **{f"records_{source}": n for source, n in record_counts.items()},
        "scored_pairs": n_scored,
        **link_counts,
        **cluster_counts,
        **key_counts,
        "customers": n_customers,
        "model_version": model.version if model else None,
        "model_trained": bool(model and model.trained),
        **timings,
        "seconds_total": round(sum(timings.values()), 3),
    }
    return IdentityResult(
        tables=written,
        model_version=model.version if model else None,
        model_json=model.settings_json if model else None,
        metrics=metrics,
        checks=checks,
    )


def _qualified(catalog: str, table: str) -> str:
    """`identity.records` in the warehouse catalog (Splink switches the current catalog)."""
    return f"{quote(catalog)}.{table}"


def _apply_memory_limit(conn: duckdb.DuckDBPyConnection, limit: str | None) -> str | None:
    if limit is None:
        return None
    previous = conn.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    conn.execute(f"SET memory_limit = '{limit}'")
    return previous


def _table_exists(conn: duckdb.DuckDBPyConnection, catalog: str, table: str) -> bool:
    schema, name = table.split(".")
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
            [catalog, schema, name],
        ).fetchall()[0][0]
    )


# What `identity.changelog` was called before the asset was renamed.
_LEGACY_CHANGELOG = f"{SCHEMA}.key_changelog"


def _adopt_legacy_changelog(conn: duckdb.DuckDBPyConnection, catalog: str) -> None:
    """Warehouses written before the asset was renamed hold the log as `key_changelog`: keep
    its history (it is what stops retired keys from being issued again) under the new name."""
    if _table_exists(conn, catalog, _LEGACY_CHANGELOG) and not _table_exists(
        conn, catalog, tables.IDENTITY_CHANGELOG
    ):
        new_name = tables.IDENTITY_CHANGELOG.split(".")[1]
        conn.execute(f"ALTER TABLE {_qualified(catalog, _LEGACY_CHANGELOG)} RENAME TO {new_name}")


def _previous_key_map(conn, previous_key_map, catalog: str) -> str | None:
    if previous_key_map is None:
        return None
    if isinstance(previous_key_map, str):
        if previous_key_map != USE_WAREHOUSE_KEY_MAP:
            return previous_key_map
        if _table_exists(conn, catalog, tables.CUSTOMER_KEY_MAP):
            return _qualified(catalog, tables.CUSTOMER_KEY_MAP)
        return None
    frame = previous_key_map
    if isinstance(frame, pd.DataFrame):
        missing = {"source", "source_id", "customer_key"} - set(frame.columns)
        if missing:
            raise ValueError(f"previous_key_map lacks columns {sorted(missing)}")
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    arrow_to_table(conn, frame, f"{SCRATCH}.previous_input")
    return f"{SCRATCH}.previous_input"


def _latest_stored_model(conn, catalog: str) -> str | None:
    """The newest trained model of earlier runs: used when this run has too few records to train."""
    if not _table_exists(conn, catalog, tables.IDENTITY_MODEL):
        return None
    row = conn.execute(
        f"SELECT settings_json FROM {_qualified(catalog, tables.IDENTITY_MODEL)} "
        "WHERE trained ORDER BY created_at DESC LIMIT 1"
    ).fetchall()
    return row[0][0] if row else None


def _replace_sql(catalog: str, schema: TableSchema, query: str) -> str:
    """(Re)create a table from `query`, its columns exactly as declared (names, order, types)."""
    typed = ", ".join(f"CAST(q.{quote(c.name)} AS {c.sql_type}) AS {quote(c.name)}" for c in schema.columns)
    return (
        f"CREATE OR REPLACE TABLE {_qualified(catalog, schema.table)} AS SELECT {typed} FROM ({query}) AS q"
    )


def _create_if_missing_sql(catalog: str, schema: TableSchema) -> str:
    columns = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in schema.sql_columns.items())
    return f"CREATE TABLE IF NOT EXISTS {_qualified(catalog, schema.table)} ({columns})"


def _write_outputs(
    conn, catalog: str, model: LinkageModel | None, config: IdentityConfig, now: dt.datetime
) -> None:
    s = SCRATCH
    version_sql = f"'{model.version}'" if model else "NULL"
    changelog = _qualified(catalog, tables.IDENTITY_CHANGELOG)
    model_table = _qualified(catalog, tables.IDENTITY_MODEL)
    match_weights = _qualified(catalog, tables.IDENTITY_MATCH_WEIGHTS)
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {quote(catalog)}.{SCHEMA}",
        _replace_sql(
            catalog,
            IDENTITY_RECORDS_SCHEMA,
            f"""SELECT r.*, m.customer_key FROM {s}.records r JOIN {s}.key_map m USING (record_id)
                ORDER BY r.record_id""",
        ),
        _replace_sql(
            catalog,
            IDENTITY_LINKS_SCHEMA,
            f"""SELECT rl.source AS source_l, rl.source_id AS source_id_l, rr.source AS source_r,
                       rr.source_id AS source_id_r, l.*, {version_sql}::VARCHAR AS model_version
                FROM {s}.links l
                JOIN {s}.records rl ON rl.record_id = l.record_id_l
                JOIN {s}.records rr ON rr.record_id = l.record_id_r
                ORDER BY l.record_id_l, l.record_id_r, l.link_type""",
        ),
        _replace_sql(
            catalog, CUSTOMER_KEY_MAP_SCHEMA, f"SELECT * FROM {s}.key_map ORDER BY source, source_id"
        ),
        _create_if_missing_sql(catalog, IDENTITY_CHANGELOG_SCHEMA),
        f"INSERT INTO {changelog} BY NAME SELECT * FROM {s}.changelog ORDER BY change_type, customer_key",
        _replace_sql(catalog, CUSTOMERS_SCHEMA, f"SELECT * FROM {s}.customers"),
        _replace_sql(
            catalog,
            IDENTITY_IDENTIFIERS_SCHEMA,
            f"""SELECT r.source, r.source_id, i.id_type, i.value,
                       coalesce(g.n_records, 1) AS n_records_sharing,
                       coalesce(g.n_records, 1) > {config.deterministic.max_records_per_identifier} AS is_hub,
                       a.value IS NOT NULL AS is_ambiguous
                FROM {s}.identifiers i
                JOIN {s}.records r USING (record_id)
                LEFT JOIN {s}.identifier_groups g USING (id_type, value)
                LEFT JOIN {s}.ambiguous_identifiers a USING (id_type, value)
                ORDER BY i.id_type, i.value, r.source, r.source_id""",
        ),
        _replace_sql(
            catalog,
            IDENTITY_REVIEW_FLAGS_SCHEMA,
            f"""SELECT TIMESTAMP '{now}' AS flagged_at, k.customer_key, f.reason, f.needs_review,
                       f.original_size AS original_cluster_size,
                       (SELECT count(*) FROM {s}.clusters c WHERE c.cluster_id = f.cluster_id) AS n_records,
                       f.refused_links, f.refused_link_types
                FROM {s}.guard_flags f JOIN {s}.cluster_keys k USING (cluster_id)
                ORDER BY k.customer_key""",
        ),
        _create_if_missing_sql(catalog, IDENTITY_MODEL_SCHEMA),
        _create_if_missing_sql(catalog, IDENTITY_MATCH_WEIGHTS_SCHEMA),
    ]
    if model is not None:
        n_input = conn.execute(f"SELECT count(*) FROM {s}.splink_input").fetchall()[0][0]
        model_row = pa.table(
            {
                "model_version": [model.version],
                "created_at": pa.array([now], pa.timestamp("us")),
                "config_version": pa.array([config.version], pa.int32()),
                "trained": [model.trained],
                "n_input_records": pa.array([n_input], pa.int64()),
                "settings_json": [model.settings_json],
                "notes": ["; ".join(model.training_notes)],
            }
        )
        arrow_to_table(conn, model_row, f"{s}.model_row")
        weights = pa.Table.from_pylist(
            model.match_weights,
            schema=pa.schema(
                [(c.name, _ARROW_TYPES[c.sql_type]) for c in IDENTITY_MATCH_WEIGHTS_SCHEMA.columns]
            ),
        )
        arrow_to_table(conn, weights, f"{s}.match_weight_rows")
        statements += [
            f"""INSERT INTO {model_table} BY NAME SELECT * FROM {s}.model_row
                WHERE NOT EXISTS (SELECT 1 FROM {model_table} m WHERE m.model_version = '{model.version}')""",
            f"""INSERT INTO {match_weights} BY NAME SELECT * FROM {s}.match_weight_rows
                WHERE NOT EXISTS (SELECT 1 FROM {match_weights} m WHERE m.model_version = '{model.version}')""",
        ]
    conn.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
