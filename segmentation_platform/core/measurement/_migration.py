"""How customers move between action segments from one snapshot to the next."""

import datetime as dt

import duckdb
import pandas as pd

from segmentation_platform.core.measurement._tables import MIGRATION_SCHEMA
from segmentation_platform.core.warehouse import tables

NEW_SEGMENT, GONE_SEGMENT = "(new)", "(gone)"


def migration_matrix(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> pd.DataFrame:
    """Customers moving from their segment at the previous snapshot to their segment now.

    Customers absent last time come from `(new)`, those absent now go to `(gone)`; the
    first snapshot has no previous one and is all `(new)`.
    """
    previous = conn.execute(
        f"SELECT max(snapshot_date) FROM {tables.SEGMENT_ASSIGNMENTS} WHERE snapshot_date < ?", [snapshot]
    ).fetchone()[0]
    frame = conn.execute(
        f"""
        WITH now AS (SELECT customer_key, action_segment FROM {tables.SEGMENT_ASSIGNMENTS} WHERE snapshot_date = $snapshot),
        before AS (SELECT customer_key, action_segment FROM {tables.SEGMENT_ASSIGNMENTS} WHERE snapshot_date = $previous)
        SELECT coalesce(b.action_segment, '{NEW_SEGMENT}') AS from_segment,
               coalesce(n.action_segment, '{GONE_SEGMENT}') AS to_segment,
               count(*) AS customers
        FROM now n FULL OUTER JOIN before b USING (customer_key)
        GROUP BY ALL ORDER BY 1, 2
        """,
        {"snapshot": snapshot, "previous": previous},
    ).df()
    frame.insert(0, "snapshot_date", snapshot)
    frame.insert(1, "previous_snapshot_date", previous)
    frame["share_of_from"] = frame["customers"] / frame.groupby("from_segment")["customers"].transform("sum")
    return frame[MIGRATION_SCHEMA.names]
