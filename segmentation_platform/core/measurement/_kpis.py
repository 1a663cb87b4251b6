"""What each segment is worth and went on to spend (segment KPIs), and what acquiring a
customer costs per channel against what they are worth (CAC, LTV:CAC, payback)."""

import datetime as dt
import math

import duckdb
import numpy as np
import pandas as pd

from segmentation_platform.contracts import MARKETING_SPEND
from segmentation_platform.core import warehouse
from segmentation_platform.core.measurement._purchases import (
    LONG_WINDOW_DAYS,
    SHORT_WINDOW_DAYS,
    MeasurementError,
    data_through,
    exact_avg,
    exact_sum,
    existing_columns,
    pending_note,
    purchases_sql,
    window_complete,
)
from segmentation_platform.core.measurement._tables import CHANNEL_KPIS_SCHEMA, SEGMENT_KPIS_SCHEMA
from segmentation_platform.core.warehouse import tables

SPEND_TABLE = tables.raw_table(MARKETING_SPEND.name)
CAC_WINDOW_DAYS = 90
DAYS_PER_MONTH = 365.25 / 12
UNKNOWN_CHANNEL = "unknown"


# --------------------------------------------------------------------------- segment KPIs


def segment_kpis(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> pd.DataFrame:
    """One row per action segment: size, predicted value, and realized revenue/margin/churn after the snapshot."""
    if not warehouse.table_exists(conn, tables.SEGMENT_ASSIGNMENTS):
        raise MeasurementError(f"{tables.SEGMENT_ASSIGNMENTS} does not exist: materialize the segments first")
    through = data_through(conn)
    clv = "clv.cltv" if "cltv" in existing_columns(conn, tables.CLV_SCORES) else "CAST(NULL AS DOUBLE)"
    clv_join = (
        f"LEFT JOIN {tables.CLV_SCORES} clv ON clv.customer_key = a.customer_key AND clv.snapshot_date = a.snapshot_date"
        if clv != "CAST(NULL AS DOUBLE)"
        else ""
    )
    churn = (
        "ch.churn_probability"
        if "churn_probability" in existing_columns(conn, tables.CHURN_SCORES)
        else "CAST(NULL AS DOUBLE)"
    )
    churn_join = (
        f"LEFT JOIN {tables.CHURN_SCORES} ch ON ch.customer_key = a.customer_key AND ch.snapshot_date = a.snapshot_date"
        if churn != "CAST(NULL AS DOUBLE)"
        else ""
    )
    within_30 = f"p.purchased_at < $snapshot + INTERVAL {SHORT_WINDOW_DAYS} DAY"
    frame = conn.execute(
        f"""
        WITH purchases AS ({purchases_sql(conn)}),
        members AS (
            SELECT a.customer_key, a.action_segment, {clv} AS cltv, {churn} AS churn_probability
            FROM {tables.SEGMENT_ASSIGNMENTS} a {clv_join} {churn_join}
            WHERE a.snapshot_date = $snapshot
        ),
        outcomes AS (
            SELECT p.customer_key,
                {exact_sum("p.amount", within_30)} AS revenue_30d,
                {exact_sum("p.amount - p.cost", within_30)} AS margin_30d,
                {exact_sum("p.amount")} AS revenue_90d,
                {exact_sum("p.amount - p.cost")} AS margin_90d,
                count(*) FILTER (WHERE {within_30}) AS orders_30d
            FROM purchases p
            WHERE p.purchased_at >= $snapshot AND p.purchased_at < $snapshot + INTERVAL {LONG_WINDOW_DAYS} DAY
            GROUP BY 1
        )
        SELECT m.action_segment,
            count(*) AS customers,
            {exact_avg("m.cltv")} AS mean_cltv,
            {exact_sum("m.cltv")} AS total_cltv,
            {exact_avg("m.churn_probability")} AS mean_churn_probability,
            coalesce({exact_sum("o.revenue_30d")}, 0) AS revenue_30d,
            {exact_sum("o.margin_30d")} AS margin_30d,
            avg(CASE WHEN coalesce(o.orders_30d, 0) > 0 THEN 1.0 ELSE 0.0 END) AS conversion_30d,
            coalesce({exact_sum("o.revenue_90d")}, 0) AS revenue_90d,
            {exact_sum("o.margin_90d")} AS margin_90d,
            avg(CASE WHEN o.customer_key IS NULL THEN 1.0 ELSE 0.0 END) AS realized_churn_rate_90d
        FROM members m LEFT JOIN outcomes o USING (customer_key)
        GROUP BY 1 ORDER BY 1
        """,
        {"snapshot": snapshot},
    ).df()
    frame.insert(0, "snapshot_date", snapshot)
    total = frame["customers"].sum()
    frame.insert(3, "share_of_customers", frame["customers"] / total if total else np.nan)
    frame["revenue_per_customer_30d"] = frame["revenue_30d"] / frame["customers"]
    frame["revenue_per_customer_90d"] = frame["revenue_90d"] / frame["customers"]
    notes = []
    if not window_complete(snapshot, SHORT_WINDOW_DAYS, through):
        frame[["revenue_30d", "margin_30d", "revenue_per_customer_30d", "conversion_30d"]] = np.nan
        notes.append(pending_note(snapshot, SHORT_WINDOW_DAYS, through, "30-day outcomes"))
    if not window_complete(snapshot, LONG_WINDOW_DAYS, through):
        frame[["revenue_90d", "margin_90d", "revenue_per_customer_90d", "realized_churn_rate_90d"]] = np.nan
        notes.append(pending_note(snapshot, LONG_WINDOW_DAYS, through, "90-day outcomes"))
    frame["data_through"] = through
    frame["note"] = "; ".join(notes) or None
    return frame[SEGMENT_KPIS_SCHEMA.names]


# --------------------------------------------------------------------------- acquisition economics


def channel_kpis(
    conn: duckdb.DuckDBPyConnection, snapshot: dt.date, window_days: int = CAC_WINDOW_DAYS
) -> pd.DataFrame:
    """CAC, LTV:CAC and payback per acquisition channel over the `window_days` before the snapshot.

    New customers = first identified purchase inside the window. CAC = channel spend in the
    window / new customers of the channel. LTV = mean predicted CLTV of those customers at
    the snapshot. Payback months = CAC / monthly contribution margin the cohort earned so
    far (each customer counted at least one month, so a first order does not look like a
    monthly rate); the margin rate comes from purchases that carry a cost.
    """
    start = snapshot - dt.timedelta(days=window_days)
    feature_columns = existing_columns(conn, tables.CUSTOMER_FEATURES)
    if "acquisition_channel" in feature_columns:
        channel_sql = (
            f"SELECT customer_key, lower(trim(acquisition_channel)) AS channel FROM {tables.CUSTOMER_FEATURES} "
            "WHERE snapshot_date = $snapshot"
        )
    else:
        channel_sql = (
            "SELECT CAST(NULL AS VARCHAR) AS customer_key, CAST(NULL AS VARCHAR) AS channel WHERE false"
        )
    clv_sql = (
        f"SELECT customer_key, cltv FROM {tables.CLV_SCORES} WHERE snapshot_date = $snapshot"
        if "cltv" in existing_columns(conn, tables.CLV_SCORES)
        else "SELECT CAST(NULL AS VARCHAR) AS customer_key, CAST(NULL AS DOUBLE) AS cltv WHERE false"
    )
    spend_loaded = warehouse.table_exists(conn, SPEND_TABLE)
    spend_sql = (
        f"SELECT lower(trim(channel)) AS channel, {exact_sum('spend')} AS spend FROM {SPEND_TABLE} "
        "WHERE date >= $start AND date < $snapshot GROUP BY 1"
        if spend_loaded
        else "SELECT CAST(NULL AS VARCHAR) AS channel, CAST(NULL AS DOUBLE) AS spend WHERE false"
    )
    frame = conn.execute(
        f"""
        WITH purchases AS (SELECT * FROM ({purchases_sql(conn)}) WHERE purchased_at < $snapshot),
        firsts AS (SELECT customer_key, min(purchased_at) AS first_purchase FROM purchases GROUP BY 1),
        cohort AS (
            SELECT f.customer_key, f.first_purchase,
                coalesce(c.channel, '{UNKNOWN_CHANNEL}') AS channel,
                greatest(date_diff('day', f.first_purchase, CAST($snapshot AS TIMESTAMP)) / {DAYS_PER_MONTH}, 1.0)
                    AS exposure_months
            FROM firsts f LEFT JOIN ({channel_sql}) c USING (customer_key)
            WHERE f.first_purchase >= $start
        ),
        cohort_value AS (
            SELECT co.channel,
                count(DISTINCT co.customer_key) AS new_customers,
                {exact_sum("p.amount")} AS revenue,
                {exact_sum("p.amount - p.cost")} AS known_margin,
                {exact_sum("p.amount", "p.cost IS NOT NULL")} AS revenue_with_cost
            FROM cohort co LEFT JOIN purchases p USING (customer_key)
            GROUP BY 1
        ),
        cohort_meta AS (
            SELECT co.channel, {exact_sum("co.exposure_months")} AS exposure_months,
                {exact_avg("v.cltv")} AS mean_cltv
            FROM cohort co LEFT JOIN ({clv_sql}) v USING (customer_key)
            GROUP BY 1
        ),
        spend AS ({spend_sql})
        SELECT coalesce(cv.channel, s.channel) AS acquisition_channel,
            coalesce(s.spend, 0) AS spend,
            coalesce(cv.new_customers, 0) AS new_customers,
            cm.mean_cltv, cm.exposure_months, cv.revenue, cv.known_margin, cv.revenue_with_cost
        FROM cohort_value cv
        FULL OUTER JOIN spend s ON s.channel = cv.channel
        LEFT JOIN cohort_meta cm ON cm.channel = cv.channel
        ORDER BY 1
        """,
        {"snapshot": snapshot, "start": start},
    ).df()
    rows = []
    for row in frame.itertuples(index=False):
        notes = []
        cac = row.spend / row.new_customers if row.new_customers else np.nan
        if not row.new_customers:
            notes.append("no new customers in the window: CAC undefined")
        if not spend_loaded:
            cac = np.nan
            notes.append(f"{SPEND_TABLE} is not loaded: CAC unknown")
        elif row.acquisition_channel == UNKNOWN_CHANNEL:
            cac = np.nan
            notes.append("customers without an acquisition channel in features: no spend to attribute")
        ltv_to_cac = (
            row.mean_cltv / cac if cac and not _missing(cac) and not _missing(row.mean_cltv) else np.nan
        )
        monthly_margin = np.nan
        if row.new_customers and not _missing(row.revenue_with_cost) and row.revenue_with_cost > 0:
            margin_rate = row.known_margin / row.revenue_with_cost
            monthly_margin = margin_rate * row.revenue / row.exposure_months
            if row.revenue_with_cost < row.revenue:
                notes.append(
                    f"margin rate from {row.revenue_with_cost / row.revenue:.0%} of revenue that has a cost"
                )
        elif row.new_customers:
            notes.append("no purchase cost recorded: payback unknown")
        payback = cac / monthly_margin if not _missing(monthly_margin) and monthly_margin > 0 else np.nan
        if (
            spend_loaded
            and row.spend == 0
            and row.new_customers
            and row.acquisition_channel != UNKNOWN_CHANNEL
        ):
            notes.append("no spend recorded for this channel (organic)")
        rows.append(
            {
                "snapshot_date": snapshot,
                "acquisition_channel": row.acquisition_channel,
                "window_start": start,
                "spend": float(row.spend) if spend_loaded else np.nan,
                "new_customers": int(row.new_customers),
                "cac": cac,
                "mean_cltv_new_customers": row.mean_cltv,
                "ltv_to_cac": ltv_to_cac,
                "monthly_margin_per_customer": monthly_margin,
                "payback_months": payback,
                "note": "; ".join(notes) or None,
            }
        )
    return pd.DataFrame(rows, columns=CHANNEL_KPIS_SCHEMA.names)


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
