"""Measurement: did acting on the segments pay off?

Per weekly snapshot: what each segment is worth and went on to spend (segment KPIs),
what acquiring a customer costs per channel against what they are worth (CAC, LTV:CAC,
payback), how customers move between segments (migration), and the causal effect of
activation, treated vs holdout, with 95% confidence intervals (lift).

Outcomes are read from the days *after* the snapshot, so a snapshot is only measured
once the warehouse holds all of its outcome window; until then the numbers are NULL and
a note says what data is still missing, instead of a misleadingly low number.
Pure Python + DuckDB; no Dagster.
"""

import datetime as dt
import math
from collections.abc import Iterable

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from segmentation_platform.contracts import POS_TRANSACTIONS, WEB_ORDERS, SourceContract
from segmentation_platform.core import warehouse
from segmentation_platform.core.activation import Experiment

ASSIGNMENTS_TABLE = "segments.assignments"
HOLDOUTS_TABLE = "activation.holdouts"
KEY_MAP_TABLE = "identity.customer_key_map"
CLV_TABLE = "models.clv_scores"
CHURN_TABLE = "models.churn_scores"
FEATURES_TABLE = "features.customer_features"
SPEND_TABLE = "raw.marketing_spend"
PURCHASE_SOURCES: tuple[SourceContract, ...] = (WEB_ORDERS, POS_TRANSACTIONS)
SHORT_WINDOW_DAYS, LONG_WINDOW_DAYS = 30, 90
CAC_WINDOW_DAYS = 90
DAYS_PER_MONTH = 365.25 / 12

SEGMENT_KPI_COLUMNS = {
    "snapshot_date": "DATE",
    "action_segment": "VARCHAR",
    "customers": "BIGINT",
    "share_of_customers": "DOUBLE",
    "mean_cltv": "DOUBLE",
    "total_cltv": "DOUBLE",
    "mean_churn_probability": "DOUBLE",
    "revenue_30d": "DOUBLE",
    "margin_30d": "DOUBLE",
    "revenue_per_customer_30d": "DOUBLE",
    "conversion_30d": "DOUBLE",
    "revenue_90d": "DOUBLE",
    "margin_90d": "DOUBLE",
    "revenue_per_customer_90d": "DOUBLE",
    "realized_churn_rate_90d": "DOUBLE",
    "data_through": "DATE",
    "note": "VARCHAR",
}
CHANNEL_KPI_COLUMNS = {
    "snapshot_date": "DATE",
    "acquisition_channel": "VARCHAR",
    "window_start": "DATE",
    "spend": "DOUBLE",
    "new_customers": "BIGINT",
    "cac": "DOUBLE",
    "mean_cltv_new_customers": "DOUBLE",
    "ltv_to_cac": "DOUBLE",
    "monthly_margin_per_customer": "DOUBLE",
    "payback_months": "DOUBLE",
    "note": "VARCHAR",
}
MIGRATION_COLUMNS = {
    "snapshot_date": "DATE",
    "previous_snapshot_date": "DATE",
    "from_segment": "VARCHAR",
    "to_segment": "VARCHAR",
    "customers": "BIGINT",
    "share_of_from": "DOUBLE",
}
LIFT_COLUMNS = {
    "snapshot_date": "DATE",
    "action_segment": "VARCHAR",
    "experiment": "VARCHAR",
    "outcome_window_days": "INTEGER",
    "treatment_customers": "BIGINT",
    "holdout_customers": "BIGINT",
    "treatment_conversion": "DOUBLE",
    "holdout_conversion": "DOUBLE",
    "conversion_lift": "DOUBLE",
    "conversion_lift_low": "DOUBLE",
    "conversion_lift_high": "DOUBLE",
    "relative_conversion_lift": "DOUBLE",
    "treatment_revenue_per_customer": "DOUBLE",
    "holdout_revenue_per_customer": "DOUBLE",
    "revenue_lift": "DOUBLE",
    "revenue_lift_low": "DOUBLE",
    "revenue_lift_high": "DOUBLE",
    "incremental_revenue": "DOUBLE",
    "note": "VARCHAR",
}
NEW_SEGMENT, GONE_SEGMENT = "(new)", "(gone)"
UNKNOWN_CHANNEL = "unknown"


class MeasurementError(RuntimeError):
    """Inputs a measurement cannot do without are missing."""


# --------------------------------------------------------------------------- exact sums

EXACT_SCALE = 9  # decimal places kept per summed value: below a cent, a CLTV or a probability's noise


def exact_sum(expression: str, where: str | None = None) -> str:
    """SQL summing `expression` as fixed-point decimals, cast back to DOUBLE.

    A DOUBLE sum depends on the order rows arrive in, which DuckDB's parallel scans and
    UNION ALL leave open: a re-run would change the last bits of a KPI and with them the
    table's checksum. Decimal addition is exact, so the result is the same in any order.
    """
    condition = f" FILTER (WHERE {where})" if where else ""
    return f"CAST(sum(CAST({expression} AS DECIMAL(38, {EXACT_SCALE}))){condition} AS DOUBLE)"


def exact_avg(expression: str) -> str:
    """`avg` as `exact_sum` / count of non-NULL values (NULL when there are none)."""
    return f"({exact_sum(expression)} / nullif(count({expression}), 0))"


# --------------------------------------------------------------------------- purchases


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return warehouse.table_columns(conn, table) if warehouse.table_exists(conn, table) else []


def purchases_sql(conn: duckdb.DuckDBPyConnection) -> str:
    """A subquery of every identified purchase: customer_key, purchased_at, amount, cost.

    Rows reach a customer through the key map with the same `person_ref` SQL identity
    resolution used, so the two can never disagree about whose purchase it is.
    """
    if not warehouse.table_exists(conn, KEY_MAP_TABLE):
        raise MeasurementError(f"{KEY_MAP_TABLE} does not exist: run identity resolution first")
    parts = []
    for contract in PURCHASE_SOURCES:
        columns = _columns(conn, f"raw.{contract.name}")
        if not columns:
            continue
        # person_ref may name optional columns a table created from a narrower load lacks.
        absent = ", ".join(
            f"CAST(NULL AS {c.duckdb_type}) AS {c.name}" for c in contract.columns if c.name not in columns
        )
        source = f"SELECT *{', ' + absent if absent else ''} FROM raw.{contract.name}"
        parts.append(
            f"SELECT m.customer_key, CAST(r.{contract.event_time} AS TIMESTAMP) AS purchased_at, "
            f"CAST(r.amount AS DOUBLE) AS amount, CAST(r.cost AS DOUBLE) AS cost "
            f"FROM (SELECT *, CAST({contract.person_ref} AS VARCHAR) AS _person FROM ({source})) r "
            f"JOIN {KEY_MAP_TABLE} m ON m.source = '{contract.name}' AND m.source_id = r._person"
        )
    if not parts:
        return (
            "SELECT CAST(NULL AS VARCHAR) AS customer_key, CAST(NULL AS TIMESTAMP) AS purchased_at, "
            "CAST(NULL AS DOUBLE) AS amount, CAST(NULL AS DOUBLE) AS cost WHERE false"
        )
    return " UNION ALL ".join(parts)


def data_through(conn: duckdb.DuckDBPyConnection) -> dt.date | None:
    """First day the warehouse does not hold purchases for yet (the laggiest source decides)."""
    ends = []
    for contract in PURCHASE_SOURCES:
        columns = _columns(conn, f"raw.{contract.name}")
        if not columns:
            continue
        if "_partition_date" in columns:
            last = conn.execute(f"SELECT max(_partition_date) FROM raw.{contract.name}").fetchone()[0]
        else:
            last = conn.execute(
                f"SELECT max(CAST({contract.event_time} AS DATE)) FROM raw.{contract.name}"
            ).fetchone()[0]
        if last is not None:
            ends.append(last + dt.timedelta(days=1))
    return min(ends) if ends else None


def window_complete(snapshot: dt.date, days: int, through: dt.date | None) -> bool:
    return through is not None and snapshot + dt.timedelta(days=days) <= through


def _pending_note(snapshot: dt.date, days: int, through: dt.date | None, what: str) -> str:
    needed = snapshot + dt.timedelta(days=days)
    held = through.isoformat() if through else "nothing"
    return f"{what} pending: needs purchases through {needed - dt.timedelta(days=1)}, warehouse holds up to {held} (exclusive)"


# --------------------------------------------------------------------------- segment KPIs


def segment_kpis(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> pd.DataFrame:
    """One row per action segment: size, predicted value, and realized revenue/margin/churn after the snapshot."""
    if not warehouse.table_exists(conn, ASSIGNMENTS_TABLE):
        raise MeasurementError(f"{ASSIGNMENTS_TABLE} does not exist: materialize the segments first")
    through = data_through(conn)
    clv = "clv.cltv" if "cltv" in _columns(conn, CLV_TABLE) else "CAST(NULL AS DOUBLE)"
    clv_join = (
        f"LEFT JOIN {CLV_TABLE} clv ON clv.customer_key = a.customer_key AND clv.snapshot_date = a.snapshot_date"
        if clv != "CAST(NULL AS DOUBLE)"
        else ""
    )
    churn = (
        "ch.churn_probability"
        if "churn_probability" in _columns(conn, CHURN_TABLE)
        else "CAST(NULL AS DOUBLE)"
    )
    churn_join = (
        f"LEFT JOIN {CHURN_TABLE} ch ON ch.customer_key = a.customer_key AND ch.snapshot_date = a.snapshot_date"
        if churn != "CAST(NULL AS DOUBLE)"
        else ""
    )
    within_30 = f"p.purchased_at < $snapshot + INTERVAL {SHORT_WINDOW_DAYS} DAY"
    frame = conn.execute(
        f"""
        WITH purchases AS ({purchases_sql(conn)}),
        members AS (
            SELECT a.customer_key, a.action_segment, {clv} AS cltv, {churn} AS churn_probability
            FROM {ASSIGNMENTS_TABLE} a {clv_join} {churn_join}
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
        notes.append(_pending_note(snapshot, SHORT_WINDOW_DAYS, through, "30-day outcomes"))
    if not window_complete(snapshot, LONG_WINDOW_DAYS, through):
        frame[["revenue_90d", "margin_90d", "revenue_per_customer_90d", "realized_churn_rate_90d"]] = np.nan
        notes.append(_pending_note(snapshot, LONG_WINDOW_DAYS, through, "90-day outcomes"))
    frame["data_through"] = through
    frame["note"] = "; ".join(notes) or None
    return frame[list(SEGMENT_KPI_COLUMNS)]


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
    feature_columns = _columns(conn, FEATURES_TABLE)
    if "acquisition_channel" in feature_columns:
        channel_sql = (
            f"SELECT customer_key, lower(trim(acquisition_channel)) AS channel FROM {FEATURES_TABLE} "
            "WHERE snapshot_date = $snapshot"
        )
    else:
        channel_sql = (
            "SELECT CAST(NULL AS VARCHAR) AS customer_key, CAST(NULL AS VARCHAR) AS channel WHERE false"
        )
    clv_sql = (
        f"SELECT customer_key, cltv FROM {CLV_TABLE} WHERE snapshot_date = $snapshot"
        if "cltv" in _columns(conn, CLV_TABLE)
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
    return pd.DataFrame(rows, columns=list(CHANNEL_KPI_COLUMNS))


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- migration


def migration_matrix(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> pd.DataFrame:
    """Customers moving from their segment at the previous snapshot to their segment now.

    Customers absent last time come from `(new)`, those absent now go to `(gone)`; the
    first snapshot has no previous one and is all `(new)`.
    """
    previous = conn.execute(
        f"SELECT max(snapshot_date) FROM {ASSIGNMENTS_TABLE} WHERE snapshot_date < ?", [snapshot]
    ).fetchone()[0]
    frame = conn.execute(
        f"""
        WITH now AS (SELECT customer_key, action_segment FROM {ASSIGNMENTS_TABLE} WHERE snapshot_date = $snapshot),
        before AS (SELECT customer_key, action_segment FROM {ASSIGNMENTS_TABLE} WHERE snapshot_date = $previous)
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
    return frame[list(MIGRATION_COLUMNS)]


# --------------------------------------------------------------------------- lift statistics

Z95 = stats.norm.ppf(0.975)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return (centre - half, centre + half)


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (method 10): sound near 0 and 1, unlike Wald."""
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan, math.nan)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (difference, low, high)


def wald_difference(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan, math.nan)
    p1, p2 = x1 / n1, x2 / n2
    half = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return (p1 - p2, p1 - p2 - half, p1 - p2 + half)


def welch_difference(
    a: Iterable[float], b: Iterable[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """mean(a) - mean(b) with a Welch t interval (unequal variances, large samples make skew harmless)."""
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if len(a) < 2 or len(b) < 2:
        return (math.nan, math.nan, math.nan)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference = a.mean() - b.mean()
    se = math.sqrt(va + vb)
    if se == 0:
        return (difference, difference, difference)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return (difference, difference - half, difference + half)


def lift_table(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per action segment, treatment minus holdout on conversion and revenue per customer.

    `outcomes` has one row per customer: action_segment, experiment, group ('treatment' or
    'holdout'), converted (bool), revenue. Groups are compared as assigned (intention to
    treat): a treated customer without consent still counts as treated, as randomization
    intended, so the estimate is unbiased for "activating this segment".
    """
    rows = []
    for (segment, experiment), group in outcomes.groupby(
        ["action_segment", "experiment"], sort=True, dropna=False
    ):
        treated = group[group["group"] == "treatment"]
        held = group[group["group"] == "holdout"]
        x1, n1 = int(treated["converted"].sum()), len(treated)
        x2, n2 = int(held["converted"].sum()), len(held)
        conversion, conversion_low, conversion_high = newcombe_difference(x1, n1, x2, n2)
        revenue, revenue_low, revenue_high = welch_difference(treated["revenue"], held["revenue"])
        holdout_rate = x2 / n2 if n2 else math.nan
        note = None
        if n2 < 30 or n1 < 30:
            note = "fewer than 30 customers in a group: interval is rough"
        rows.append(
            {
                "action_segment": segment,
                "experiment": experiment,
                "treatment_customers": n1,
                "holdout_customers": n2,
                "treatment_conversion": x1 / n1 if n1 else math.nan,
                "holdout_conversion": holdout_rate,
                "conversion_lift": conversion,
                "conversion_lift_low": conversion_low,
                "conversion_lift_high": conversion_high,
                "relative_conversion_lift": conversion / holdout_rate if holdout_rate else math.nan,
                "treatment_revenue_per_customer": treated["revenue"].mean() if n1 else math.nan,
                "holdout_revenue_per_customer": held["revenue"].mean() if n2 else math.nan,
                "revenue_lift": revenue,
                "revenue_lift_low": revenue_low,
                "revenue_lift_high": revenue_high,
                "incremental_revenue": revenue * n1 if not math.isnan(revenue) else math.nan,
                "note": note,
            }
        )
    return pd.DataFrame(
        rows, columns=[c for c in LIFT_COLUMNS if c not in ("snapshot_date", "outcome_window_days")]
    )


def experiment_outcomes(
    conn: duckdb.DuckDBPyConnection,
    snapshot: dt.date,
    experiments: Iterable[Experiment],
    window_days: int = SHORT_WINDOW_DAYS,
) -> pd.DataFrame:
    """Per customer of a segment under experiment: group, purchased in the window, revenue in it.

    Customers held out by a *different* experiment (they moved here after being held out
    elsewhere) are left out of both groups: they were not treated, and leaving them out
    does not bias the comparison because their holdout draw is independent of this one.
    """
    if not warehouse.table_exists(conn, HOLDOUTS_TABLE):
        raise MeasurementError(f"{HOLDOUTS_TABLE} does not exist: materialize activation/holdouts first")
    segments = conn.execute(
        f"SELECT DISTINCT action_segment FROM {ASSIGNMENTS_TABLE} WHERE snapshot_date = ?", [snapshot]
    ).fetchall()
    active = [e for e in experiments if e.active_on(snapshot)]
    pairs = pd.DataFrame(
        [(segment, e.name) for (segment,) in segments for e in active if e.covers(segment)],
        columns=["action_segment", "experiment"],
    ).drop_duplicates("action_segment")
    conn.register("_segment_experiments", pairs)
    try:
        return conn.execute(
            f"""
            WITH purchases AS ({purchases_sql(conn)}),
            window_value AS (
                SELECT customer_key, {exact_sum("amount")} AS revenue FROM purchases
                WHERE purchased_at >= $snapshot AND purchased_at < $snapshot + INTERVAL {window_days} DAY
                GROUP BY 1
            ),
            held AS (SELECT customer_key, experiment FROM {HOLDOUTS_TABLE} WHERE snapshot_date = $snapshot)
            SELECT a.customer_key, a.action_segment, e.experiment,
                CASE WHEN h.customer_key IS NULL THEN 'treatment' ELSE 'holdout' END AS "group",
                w.customer_key IS NOT NULL AS converted,
                coalesce(w.revenue, 0) AS revenue
            FROM {ASSIGNMENTS_TABLE} a
            JOIN _segment_experiments e ON e.action_segment = a.action_segment
            LEFT JOIN held h ON h.customer_key = a.customer_key AND h.experiment = e.experiment
            LEFT JOIN window_value w ON w.customer_key = a.customer_key
            WHERE a.snapshot_date = $snapshot
              AND NOT EXISTS (
                SELECT 1 FROM held o WHERE o.customer_key = a.customer_key AND o.experiment <> e.experiment
              )
            ORDER BY a.customer_key
            """,
            {"snapshot": snapshot},
        ).df()
    finally:
        conn.unregister("_segment_experiments")


_OUTCOME_COLUMNS = [
    c
    for c in LIFT_COLUMNS
    if c
    not in (
        "snapshot_date",
        "action_segment",
        "experiment",
        "outcome_window_days",
        "treatment_customers",
        "holdout_customers",
        "note",
    )
]


def lift(
    conn: duckdb.DuckDBPyConnection,
    snapshot: dt.date,
    experiments: Iterable[Experiment],
    window_days: int = SHORT_WINDOW_DAYS,
) -> pd.DataFrame:
    """`lift_table` for the snapshot; outcomes stay NULL (with a note) until the window is in the warehouse."""
    table = lift_table(experiment_outcomes(conn, snapshot, experiments, window_days))
    table.insert(0, "snapshot_date", snapshot)
    table.insert(3, "outcome_window_days", window_days)
    through = data_through(conn)
    if not window_complete(snapshot, window_days, through) and not table.empty:
        table[_OUTCOME_COLUMNS] = np.nan
        table["note"] = _pending_note(snapshot, window_days, through, f"{window_days}-day lift")
    return table[list(LIFT_COLUMNS)]
