"""The rules the measurement assets' checks decide by: plain inputs, plain outputs."""

import datetime as dt

import duckdb
import pandas as pd

from segmentation_platform.core.measurement._migration import GONE_SEGMENT
from segmentation_platform.core.warehouse import tables

# Slack for floating-point rounding when an estimate sits exactly on its interval's bound.
INTERVAL_TOLERANCE = 1e-12


def kpis_cover_assignments(
    conn: duckdb.DuckDBPyConnection, snapshot: dt.date, kpis: pd.DataFrame
) -> dict | None:
    """None when the segment KPIs count every assigned customer of the snapshot once; else both counts."""
    assigned = conn.execute(
        f"SELECT count(*) FROM {tables.SEGMENT_ASSIGNMENTS} WHERE snapshot_date = ?", [snapshot]
    ).fetchone()[0]
    if int(kpis["customers"].sum()) != assigned:
        return {"kpis": int(kpis["customers"].sum()), "assigned": assigned}
    return None


def flows_conserve_customers(
    conn: duckdb.DuckDBPyConnection, snapshot: dt.date, migration: pd.DataFrame
) -> dict | None:
    """None when the flows into each segment add up to its customers at the snapshot; else both sides."""
    now = dict(
        conn.execute(
            f"SELECT action_segment, count(*) FROM {tables.SEGMENT_ASSIGNMENTS} "
            "WHERE snapshot_date = ? GROUP BY 1",
            [snapshot],
        ).fetchall()
    )
    inflow = migration[migration["to_segment"] != GONE_SEGMENT].groupby("to_segment")["customers"].sum()
    if inflow.to_dict() != now:
        return {"flows_in": inflow.to_dict(), "assigned": now}
    return None


def lifts_outside_intervals(lift: pd.DataFrame, snapshot: dt.date) -> list[str]:
    """`<snapshot> <segment> <metric>` for every measured lift outside its own confidence interval."""
    bad = []
    for record in lift.dropna(subset=["conversion_lift", "revenue_lift"]).to_dict("records"):
        for name in ("conversion_lift", "revenue_lift"):
            low, high = record[f"{name}_low"], record[f"{name}_high"]
            if not low - INTERVAL_TOLERANCE <= record[name] <= high + INTERVAL_TOLERANCE:
                bad.append(f"{snapshot} {record['action_segment']} {name}")
    return bad
