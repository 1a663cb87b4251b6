"""`models.registry`: one row per fitted model and snapshot, for governance review.

Rows are replaced per (model, snapshot_date), so re-fitting a snapshot never
duplicates its entry.
"""

import json
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import pandas as pd

from segmentation_platform.core.warehouse import TableSchema, columns, ensure_table, table_ref, tables

REGISTRY_SCHEMA = TableSchema(
    table=tables.MODEL_REGISTRY,
    grain="model x snapshot",
    columns=columns(
        ("model", "VARCHAR", "Model name (e.g. bgnbd, churn_survival, behaviour_clusters)"),
        ("version", "VARCHAR", "code_version of the asset that fitted it"),
        ("snapshot_date", "DATE", "Snapshot the model was fitted for"),
        ("fitted_at", "TIMESTAMP", "When it was fitted (UTC)"),
        ("training_start", "DATE", "First day (or snapshot) of its training data"),
        ("training_end", "DATE", "Last day (or snapshot) of its training data"),
        ("n_training_rows", "BIGINT", "Rows it was fitted on"),
        ("parameters", "VARCHAR", "JSON: fitted parameters and the settings behind them"),
        ("metrics", "VARCHAR", "JSON: validation metrics"),
        ("is_champion", "BOOLEAN", "Whether this model produced the snapshot's published scores"),
    ),
)
REGISTRY_TABLE = REGISTRY_SCHEMA.table


@dataclass
class ModelRecord:
    model: str
    version: str
    snapshot_date: date
    fitted_at: datetime
    training_start: date | None
    training_end: date | None
    n_training_rows: int
    parameters: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    is_champion: bool = False


def record_models(conn: duckdb.DuckDBPyConnection, records: list[ModelRecord]) -> None:
    ensure_table(conn, REGISTRY_TABLE, REGISTRY_SCHEMA.sql_columns)
    if not records:
        return
    frame = pd.DataFrame(
        [
            {
                **r.__dict__,
                "parameters": json.dumps(r.parameters, sort_keys=True, default=float),
                "metrics": json.dumps(r.metrics, sort_keys=True, default=float),
            }
            for r in records
        ]
    )
    conn.register("_registry_rows", frame)
    try:
        conn.execute("BEGIN TRANSACTION")
        conn.execute(
            f"DELETE FROM {table_ref(REGISTRY_TABLE)} r USING _registry_rows n "
            "WHERE r.model = n.model AND r.snapshot_date = n.snapshot_date"
        )
        conn.execute(f"INSERT INTO {table_ref(REGISTRY_TABLE)} BY NAME SELECT * FROM _registry_rows")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.unregister("_registry_rows")
