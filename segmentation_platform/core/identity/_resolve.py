"""Identity resolution: one stable customer key per person across every source.

Entry point: `resolve_identities(conn, ...)`. It reads the raw warehouse tables
(`raw.web_orders`, `raw.pos_transactions`, `raw.crm_contacts`, `raw.support_tickets`,
`raw.email_events`; any may be absent) and WRITES its outputs itself into schema
`identity` (configurable) of the same DuckDB connection, in one transaction at the end,
so a failed run leaves the previous outputs intact. It returns an `IdentityResult` with
the table names, the model artefact and run metrics. Intermediate tables live in an
in-memory catalog attached for the run (`identity_scratch`) and never touch the file.

Output tables (all replaced on each run unless noted):

- `identity.records` — one row per (source, source_id) person record, normalized:
  record_id (per run), source, source_id, first_name, first_name_forms, last_name,
  email, email_local, phone (E.164), address, postcode, birth_date, loyalty_id,
  display_first_name, display_last_name, display_address, first_seen_at, last_seen_at,
  n_source_rows, email_consent, sms_consent, consent_updated_at, email_unsubscribed,
  customer_key.
- `identity.links` — evidence between records: source_l, source_id_l, source_r,
  source_id_r, record_id_l, record_id_r, link_type (email | phone | loyalty_id |
  xref:<source>.<column> | probabilistic), match_probability (1 for deterministic),
  match_weight, accepted, refused_by_guard, evidence (comparison levels for scored pairs:
  look them up in `identity.match_weights`), model_version.
- `identity.customer_key_map` — source, source_id, customer_key, assigned_at (when the
  record got its current key).
- `identity.changelog` — APPENDED: changed_at, change_type (new | merge | split |
  retire), customer_key, previous_keys, retired_keys, n_records, n_records_moved,
  evidence (JSON).
- `identity.customers` — golden record per customer_key (see identity_golden).
- `identity.review_flags` — over-merge guard actions: flagged_at, customer_key, reason,
  needs_review, original_cluster_size, n_records, refused_links, refused_link_types.
- `identity.identifiers` — every normalized email / phone / loyalty id a record carried
  (history included): source, source_id, id_type, value, n_records_sharing, is_hub,
  is_ambiguous (why a shared value linked nothing).
- `identity.model` — APPENDED per new model version: model_version, created_at,
  config_version, trained, n_input_records, settings_json, notes.
- `identity.match_weights` — APPENDED per new model version: per comparison level m, u,
  Bayes factor and match weight (log2), the chart data a reviewer reads.

The key map of the previous run is read from `identity.customer_key_map` (or passed in),
which is what keeps keys stable; see identity_keys for the rules.
"""

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from segmentation_platform.core.identity._config import (
    IdentityConfig,
    IdentityConfigError,
    load_identity_config,
)
from segmentation_platform.core.identity._golden import CUSTOMER_COLUMNS, build_customers
from segmentation_platform.core.identity._graph import (
    LINK_COLUMNS,
    build_links,
    cluster_records,
    find_shared_identifiers,
)
from segmentation_platform.core.identity._keys import (
    CHANGELOG_COLUMNS,
    KEY_MAP_COLUMNS,
    assign_keys,
    highest_issued_sequence,
)
from segmentation_platform.core.identity._model import MATCH_WEIGHT_COLUMNS, LinkageModel, score_pairs
from segmentation_platform.core.identity._quality import (
    CheckResult,
    check_cluster_size_cap,
    check_every_record_has_one_key,
    clustering_accuracy,
    compare_key_maps,
)
from segmentation_platform.core.identity._records import (
    RECORD_COLUMNS,
    arrow_to_table,
    build_records,
    email_local_part,
    first_name_forms,
    normalize_address,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_postcode,
)

__all__ = [
    "CheckResult",
    "IdentityConfig",
    "IdentityConfigError",
    "IdentityResult",
    "OUTPUT_TABLES",
    "first_name_forms",
    "check_cluster_size_cap",
    "check_every_record_has_one_key",
    "clustering_accuracy",
    "compare_key_maps",
    "email_local_part",
    "load_identity_config",
    "normalize_address",
    "normalize_email",
    "normalize_name",
    "normalize_phone",
    "normalize_postcode",
    "resolve_identities",
]

SCRATCH = "identity_scratch"
USE_WAREHOUSE_KEY_MAP = "warehouse"

REVIEW_FLAG_COLUMNS = {
    "flagged_at": "TIMESTAMP",
    "customer_key": "VARCHAR",
    "reason": "VARCHAR",
    "needs_review": "BOOLEAN",
    "original_cluster_size": "BIGINT",
    "n_records": "BIGINT",
    "refused_links": "BIGINT",
    "refused_link_types": "VARCHAR",
}
IDENTIFIER_COLUMNS = {
    "source": "VARCHAR",
    "source_id": "VARCHAR",
    "id_type": "VARCHAR",
    "value": "VARCHAR",
    "n_records_sharing": "BIGINT",
    "is_hub": "BOOLEAN",
    "is_ambiguous": "BOOLEAN",
}
MODEL_COLUMNS = {
    "model_version": "VARCHAR",
    "created_at": "TIMESTAMP",
    "config_version": "INTEGER",
    "trained": "BOOLEAN",
    "n_input_records": "BIGINT",
    "settings_json": "VARCHAR",
    "notes": "VARCHAR",
}
OUTPUT_TABLES: dict[str, dict[str, str]] = {
    "records": {**RECORD_COLUMNS, "customer_key": "VARCHAR"},
    "links": {
        "source_l": "VARCHAR",
        "source_id_l": "VARCHAR",
        "source_r": "VARCHAR",
        "source_id_r": "VARCHAR",
        **LINK_COLUMNS,
        "model_version": "VARCHAR",
    },
    "customer_key_map": {k: v for k, v in KEY_MAP_COLUMNS.items() if k != "record_id"},
    "changelog": CHANGELOG_COLUMNS,
    "customers": CUSTOMER_COLUMNS,
    "review_flags": REVIEW_FLAG_COLUMNS,
    "identifiers": IDENTIFIER_COLUMNS,
    "model": MODEL_COLUMNS,
    "match_weights": MATCH_WEIGHT_COLUMNS,
}


@dataclass
class IdentityResult:
    """What a run wrote and how it went; tables are fully qualified names."""

    schema: str
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
    schema: str = "identity",
) -> IdentityResult:
    """Resolve every raw person record to a stable customer key and write `schema.*`.

    previous_key_map: "warehouse" (default) reads `schema.customer_key_map` when it
    exists; a DataFrame/Arrow table or a table name supplies one; None starts afresh
    (every cluster gets a new key — only for a first run or a deliberate reset).
    model_json: a Splink model JSON to score with instead of training (e.g. a
    `settings_json` of `schema.model`). With fewer records than
    `probabilistic.min_records_to_train`, the newest stored model is used, else the
    packaged default model.
    """
    config = config or load_identity_config()
    now = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    catalog = conn.execute("SELECT current_database()").fetchall()[0][0]
    out = f'"{catalog}"."{schema}"'
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
        _adopt_legacy_changelog(conn, catalog, schema)
        previous_map = _previous_key_map(conn, previous_key_map, catalog, schema)
        changelog_table = f"{out}.changelog" if _table_exists(conn, catalog, schema, "changelog") else None
        record_counts = build_records(conn, catalog, SCRATCH, config, now.date())
        lap("records")
        find_shared_identifiers(conn, SCRATCH, config)
        lap("shared_identifiers")
        model, n_scored = score_pairs(
            conn, SCRATCH, config, model_json, fallback_model_json=_latest_stored_model(conn, catalog, schema)
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
        _write_outputs(conn, out, model, config, now)
        lap("write")
    finally:
        conn.execute(f"DETACH {SCRATCH}")
        _apply_memory_limit(conn, previous_memory_limit)

    tables = {name: f"{out}.{name}" for name in OUTPUT_TABLES}
    checks = {
        "every_record_has_one_key": check_every_record_has_one_key(
            conn, tables["records"], tables["customer_key_map"]
        ),
        "cluster_size_cap": check_cluster_size_cap(
            conn, config.clustering.max_cluster_size, tables["customer_key_map"]
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
        schema=schema,
        tables=tables,
        model_version=model.version if model else None,
        model_json=model.settings_json if model else None,
        metrics=metrics,
        checks=checks,
    )


def _apply_memory_limit(conn: duckdb.DuckDBPyConnection, limit: str | None) -> str | None:
    if limit is None:
        return None
    previous = conn.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    conn.execute(f"SET memory_limit = '{limit}'")
    return previous


def _table_exists(conn: duckdb.DuckDBPyConnection, catalog: str, schema: str, table: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
            [catalog, schema, table],
        ).fetchall()[0][0]
    )


def _adopt_legacy_changelog(conn: duckdb.DuckDBPyConnection, catalog: str, schema: str) -> None:
    """Warehouses written before the asset was renamed hold the log as `key_changelog`: keep
    its history (it is what stops retired keys from being issued again) under the new name."""
    if _table_exists(conn, catalog, schema, "key_changelog") and not _table_exists(
        conn, catalog, schema, "changelog"
    ):
        conn.execute(f'ALTER TABLE "{catalog}"."{schema}".key_changelog RENAME TO changelog')


def _previous_key_map(conn, previous_key_map, catalog: str, schema: str) -> str | None:
    if previous_key_map is None:
        return None
    if isinstance(previous_key_map, str):
        if previous_key_map != USE_WAREHOUSE_KEY_MAP:
            return previous_key_map
        if _table_exists(conn, catalog, schema, "customer_key_map"):
            return f'"{catalog}"."{schema}".customer_key_map'
        return None
    frame = previous_key_map
    if isinstance(frame, pd.DataFrame):
        missing = {"source", "source_id", "customer_key"} - set(frame.columns)
        if missing:
            raise ValueError(f"previous_key_map lacks columns {sorted(missing)}")
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    arrow_to_table(conn, frame, f"{SCRATCH}.previous_input")
    return f"{SCRATCH}.previous_input"


def _latest_stored_model(conn, catalog: str, schema: str) -> str | None:
    """The newest trained model of earlier runs: used when this run has too few records to train."""
    if not _table_exists(conn, catalog, schema, "model"):
        return None
    row = conn.execute(
        f'SELECT settings_json FROM "{catalog}"."{schema}".model WHERE trained ORDER BY created_at DESC LIMIT 1'
    ).fetchall()
    return row[0][0] if row else None


def _write_outputs(
    conn, out: str, model: LinkageModel | None, config: IdentityConfig, now: dt.datetime
) -> None:
    s = SCRATCH
    version_sql = f"'{model.version}'" if model else "NULL"
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {out.rsplit('.', 1)[0]}.{out.rsplit('.', 1)[1]}",
        f"""CREATE OR REPLACE TABLE {out}.records AS
            SELECT r.*, m.customer_key FROM {s}.records r JOIN {s}.key_map m USING (record_id)
            ORDER BY r.record_id""",
        f"""CREATE OR REPLACE TABLE {out}.links AS
            SELECT rl.source AS source_l, rl.source_id AS source_id_l, rr.source AS source_r,
                   rr.source_id AS source_id_r, l.*, {version_sql}::VARCHAR AS model_version
            FROM {s}.links l
            JOIN {s}.records rl ON rl.record_id = l.record_id_l
            JOIN {s}.records rr ON rr.record_id = l.record_id_r
            ORDER BY l.record_id_l, l.record_id_r, l.link_type""",
        f"""CREATE OR REPLACE TABLE {out}.customer_key_map AS
            SELECT source, source_id, customer_key, assigned_at FROM {s}.key_map ORDER BY source, source_id""",
        f"CREATE TABLE IF NOT EXISTS {out}.changelog ({_columns_sql(CHANGELOG_COLUMNS)})",
        f"INSERT INTO {out}.changelog BY NAME SELECT * FROM {s}.changelog ORDER BY change_type, customer_key",
        f"CREATE OR REPLACE TABLE {out}.customers AS SELECT * FROM {s}.customers",
        f"""CREATE OR REPLACE TABLE {out}.identifiers AS
            SELECT r.source, r.source_id, i.id_type, i.value, coalesce(g.n_records, 1) AS n_records_sharing,
                   coalesce(g.n_records, 1) > {config.deterministic.max_records_per_identifier} AS is_hub,
                   a.value IS NOT NULL AS is_ambiguous
            FROM {s}.identifiers i
            JOIN {s}.records r USING (record_id)
            LEFT JOIN {s}.identifier_groups g USING (id_type, value)
            LEFT JOIN {s}.ambiguous_identifiers a USING (id_type, value)
            ORDER BY i.id_type, i.value, r.source, r.source_id""",
        f"""CREATE OR REPLACE TABLE {out}.review_flags AS
            SELECT TIMESTAMP '{now}' AS flagged_at, k.customer_key, f.reason, f.needs_review,
                   f.original_size AS original_cluster_size,
                   (SELECT count(*) FROM {s}.clusters c WHERE c.cluster_id = f.cluster_id) AS n_records,
                   f.refused_links, f.refused_link_types
            FROM {s}.guard_flags f JOIN {s}.cluster_keys k USING (cluster_id)
            ORDER BY k.customer_key""",
        f"CREATE TABLE IF NOT EXISTS {out}.model ({_columns_sql(MODEL_COLUMNS)})",
        f"CREATE TABLE IF NOT EXISTS {out}.match_weights ({_columns_sql(MATCH_WEIGHT_COLUMNS)})",
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
                [
                    (
                        name,
                        {
                            "VARCHAR": pa.string(),
                            "INTEGER": pa.int32(),
                            "BOOLEAN": pa.bool_(),
                            "DOUBLE": pa.float64(),
                        }[t],
                    )
                    for name, t in MATCH_WEIGHT_COLUMNS.items()
                ]
            ),
        )
        arrow_to_table(conn, weights, f"{s}.match_weight_rows")
        statements += [
            f"""INSERT INTO {out}.model BY NAME SELECT * FROM {s}.model_row
                WHERE NOT EXISTS (SELECT 1 FROM {out}.model m WHERE m.model_version = '{model.version}')""",
            f"""INSERT INTO {out}.match_weights BY NAME SELECT * FROM {s}.match_weight_rows
                WHERE NOT EXISTS (SELECT 1 FROM {out}.match_weights m WHERE m.model_version = '{model.version}')""",
        ]
    conn.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


def _columns_sql(columns: dict[str, str]) -> str:
    return ", ".join(f'"{name}" {sql_type}' for name, sql_type in columns.items())
