"""RFM quintile scores and named segments, computed in DuckDB.

Scores are relative to one snapshot's purchasers (customers with at least one order),
so a customer's R score can drop while nothing about them changed: that is the point of
quintiles, and why the segment map carries a version on every row.
"""

import duckdb
import pyarrow as pa

from segmentation_platform.core.models.rfm._config import RfmConfig, load_rfm_config


def _score_sql(value: str, descending: bool, ties: str) -> str:
    direction = "DESC" if descending else "ASC"
    if ties == "shared":
        return (
            f"CAST(1 + floor(5 * (rank() OVER (PARTITION BY snapshot_date ORDER BY {value} {direction}) - 1)"
            " / count(*) OVER (PARTITION BY snapshot_date)) AS INTEGER)"
        )
    return f"ntile(5) OVER (PARTITION BY snapshot_date ORDER BY {value} {direction}, customer_key)"


def score_rfm(features, config: RfmConfig | None = None, conn: duckdb.DuckDBPyConnection | None = None):
    """RFM scores and segment of every purchaser in `features`, per snapshot_date.

    `features` is any frame DuckDB scans (Arrow, polars, pandas) with snapshot_date,
    customer_key, recency_days, frequency and monetary_total; several snapshots are scored
    independently. Customers without a purchase get no row. Returns an Arrow table.
    """
    config = config or load_rfm_config()
    own = conn is None
    conn = duckdb.connect() if own else conn
    segment_map = pa.table(
        {"rfm_code": list(config.code_map()), "rfm_segment": list(config.code_map().values())}
    )
    conn.register("_rfm_input", features)
    conn.register("_rfm_segment_map", segment_map)
    try:
        return conn.sql(
            f"""
            WITH scored AS (
                SELECT snapshot_date, customer_key, recency_days, frequency, monetary_total,
                    {_score_sql("recency_days", True, config.ties)} AS r_score,
                    {_score_sql("frequency", False, config.ties)} AS f_score,
                    {_score_sql("monetary_total", False, config.ties)} AS m_score
                FROM _rfm_input
                WHERE frequency > 0
            )
            SELECT CAST(snapshot_date AS DATE) AS snapshot_date, customer_key,
                CAST(recency_days AS INTEGER) AS recency_days, CAST(frequency AS BIGINT) AS frequency,
                CAST(monetary_total AS DOUBLE) AS monetary_total,
                CAST(r_score AS INTEGER) AS r_score, CAST(f_score AS INTEGER) AS f_score,
                CAST(m_score AS INTEGER) AS m_score,
                CAST((f_score + m_score + 1) // 2 AS INTEGER) AS fm_score,
                CAST(r_score AS VARCHAR) || f_score || m_score AS rfm_code,
                s.rfm_segment,
                CAST({config.version} AS INTEGER) AS segment_map_version
            FROM scored LEFT JOIN _rfm_segment_map s
                ON s.rfm_code = CAST(r_score AS VARCHAR) || f_score || m_score
            ORDER BY snapshot_date, customer_key
            """
        ).to_arrow_table()
    finally:
        conn.unregister("_rfm_input")
        conn.unregister("_rfm_segment_map")
        if own:
            conn.close()
