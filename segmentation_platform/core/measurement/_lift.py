"""The causal effect of activation: treated vs holdout per action segment, with 95% confidence
intervals (Newcombe hybrid score for conversion, Welch t for revenue per customer)."""

import datetime as dt
import math
from collections.abc import Iterable

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from segmentation_platform.core import warehouse
from segmentation_platform.core.activation import Experiment
from segmentation_platform.core.measurement._purchases import (
    SHORT_WINDOW_DAYS,
    MeasurementError,
    data_through,
    exact_sum,
    pending_note,
    purchases_sql,
    window_complete,
)
from segmentation_platform.core.measurement._tables import LIFT_SCHEMA
from segmentation_platform.core.warehouse import tables

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
        rows, columns=[c for c in LIFT_SCHEMA.names if c not in ("snapshot_date", "outcome_window_days")]
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
    if not warehouse.table_exists(conn, tables.HOLDOUTS):
        raise MeasurementError(f"{tables.HOLDOUTS} does not exist: materialize activation/holdouts first")
    segments = conn.execute(
        f"SELECT DISTINCT action_segment FROM {tables.SEGMENT_ASSIGNMENTS} WHERE snapshot_date = ?",
        [snapshot],
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
            held AS (SELECT customer_key, experiment FROM {tables.HOLDOUTS} WHERE snapshot_date = $snapshot)
            SELECT a.customer_key, a.action_segment, e.experiment,
                CASE WHEN h.customer_key IS NULL THEN 'treatment' ELSE 'holdout' END AS "group",
                w.customer_key IS NOT NULL AS converted,
                coalesce(w.revenue, 0) AS revenue
            FROM {tables.SEGMENT_ASSIGNMENTS} a
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
    for c in LIFT_SCHEMA.names
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
        table["note"] = pending_note(snapshot, window_days, through, f"{window_days}-day lift")
    return table[LIFT_SCHEMA.names]
