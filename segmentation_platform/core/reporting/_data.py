"""What the report shows for one snapshot, read from the warehouse (`ReportData`)."""

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.warehouse import tables


@dataclass
class ReportData:
    snapshot: dt.date
    scheme_version: str | None = None
    segment_kpis: pd.DataFrame = field(default_factory=pd.DataFrame)
    channel_kpis: pd.DataFrame = field(default_factory=pd.DataFrame)
    migration: pd.DataFrame = field(default_factory=pd.DataFrame)
    lift: pd.DataFrame = field(default_factory=pd.DataFrame)
    exports: pd.DataFrame = field(default_factory=pd.DataFrame)
    cltv: np.ndarray = field(default_factory=lambda: np.array([]))
    # r_score, f_score, customers
    rfm_grid: pd.DataFrame = field(default_factory=pd.DataFrame)
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))


def _snapshot_rows(conn: duckdb.DuckDBPyConnection, table: str, snapshot: dt.date) -> pd.DataFrame:
    if not warehouse.table_exists(conn, table):
        return pd.DataFrame()
    return conn.execute(f"SELECT * FROM {table} WHERE snapshot_date = ?", [snapshot]).df()


def load_report_data(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> ReportData:
    """Everything the report shows for one snapshot; any missing table just leaves its section empty."""
    data = ReportData(snapshot=snapshot)
    data.segment_kpis = _snapshot_rows(conn, tables.SEGMENT_KPIS, snapshot)
    data.channel_kpis = _snapshot_rows(conn, tables.CHANNEL_KPIS, snapshot)
    data.migration = _snapshot_rows(conn, tables.MIGRATION, snapshot)
    data.lift = _snapshot_rows(conn, tables.LIFT, snapshot)
    data.exports = _snapshot_rows(conn, tables.EXPORTS, snapshot)
    if "cltv" in (
        warehouse.table_columns(conn, tables.CLV_SCORES)
        if warehouse.table_exists(conn, tables.CLV_SCORES)
        else []
    ):
        data.cltv = (
            conn.execute(
                f"SELECT cltv FROM {tables.CLV_SCORES} WHERE snapshot_date = ? AND cltv IS NOT NULL",
                [snapshot],
            )
            .df()["cltv"]
            .to_numpy(dtype=float)
        )
    if warehouse.table_exists(conn, tables.RFM_SCORES):
        data.rfm_grid = conn.execute(
            f"SELECT CAST(r_score AS VARCHAR) AS r_score, CAST(f_score AS VARCHAR) AS f_score, count(*) AS customers "
            f"FROM {tables.RFM_SCORES} WHERE snapshot_date = ? GROUP BY ALL",
            [snapshot],
        ).df()
    if warehouse.table_exists(
        conn, tables.SEGMENT_ASSIGNMENTS
    ) and "scheme_version" in warehouse.table_columns(conn, tables.SEGMENT_ASSIGNMENTS):
        versions = conn.execute(
            f"SELECT DISTINCT CAST(scheme_version AS VARCHAR) FROM {tables.SEGMENT_ASSIGNMENTS} WHERE snapshot_date = ? "
            "ORDER BY 1",
            [snapshot],
        ).fetchall()
        data.scheme_version = ", ".join(v for (v,) in versions if v) or None
    return data
