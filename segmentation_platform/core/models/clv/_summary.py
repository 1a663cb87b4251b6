"""The transaction log as the models see it: (x, t_x, T) and mean repeat value per customer.

Notation and units are described in `_bgnbd`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

DAYS_PER_UNIT = {"days": 1.0, "weeks": 7.0}
DAYS_PER_MONTH = 365.25 / 12
SUMMARY_COLUMNS = ("frequency", "recency", "T")
# --------------------------------------------------------------------------------------------
# Transaction log -> (x, t_x, T, mean repeat value)
# --------------------------------------------------------------------------------------------


def transaction_summary(
    transactions: Any,
    snapshot_date: dt.date | dt.datetime | str,
    *,
    customer_col: str = "customer_key",
    time_col: str = "ordered_at",
    amount_col: str | None = "amount",
    margin_col: str | None = None,
    time_unit: str = "days",
) -> pl.DataFrame:
    """Per-customer BG/NBD inputs as of the end of ``snapshot_date`` (inclusive, by calendar day).

    Accepts a pandas or polars (lazy) frame; returns a polars DataFrame sorted by customer with
    columns customer_col, frequency, recency, T, first_purchase_date, last_purchase_date and,
    when the columns are given, monetary_value / margin_value (null when frequency is 0).
    Rows with a null customer or timestamp (anonymous receipts) are dropped; later
    transactions are ignored, so the same log can be summarised at any past snapshot.

    One sort by (customer, day) and run-length sums instead of two hash group-bys (several
    times faster at 3M orders, and the output comes sorted).
    """
    days_per_unit = _days_per_unit(time_unit)
    snapshot_day = (_to_date(snapshot_date) - _EPOCH).days
    frame = _as_lazy_polars(transactions)
    schema = frame.collect_schema()

    value_cols = {"monetary_value": amount_col, "margin_value": margin_col}
    value_cols = {name: col for name, col in value_cols.items() if col is not None}
    rows = (
        frame.select(
            pl.col(customer_col),
            _as_day(pl.col(time_col), schema[time_col]).cast(pl.Int32).alias("_day"),
            # A missing amount adds nothing to its day (as in a SQL or polars sum).
            *[pl.col(col).cast(pl.Float64).fill_null(0.0).alias(n) for n, col in value_cols.items()],
        )
        .filter(pl.col(customer_col).is_not_null() & (pl.col("_day") <= snapshot_day))
        .collect()
    )
    order, day, new_customer = _sort_by_customer_and_day(rows, customer_col)
    new_day = new_customer.copy()
    new_day[1:] |= day[1:] != day[:-1]
    day_starts = np.flatnonzero(new_day)
    day_index = np.cumsum(new_day) - 1  # purchase day of each sorted row
    # Among purchase days: where each customer's first day sits, and which customer each day is.
    first_of_customer = new_customer[day_starts]
    firsts = np.flatnonzero(first_of_customer)
    customer_index = np.cumsum(first_of_customer) - 1
    n_days = np.diff(np.append(firsts, len(day_starts)))
    purchase_day = day[day_starts]
    first_day = purchase_day[firsts]
    last_day = purchase_day[firsts + n_days - 1]
    frequency = n_days - 1
    repeat = frequency > 0

    columns: dict[str, Any] = {
        customer_col: rows[customer_col].gather(order[day_starts[firsts]]),
        "frequency": pl.Series(frequency, dtype=pl.Int64),
        "recency": (last_day - first_day) / days_per_unit,
        "T": (snapshot_day - first_day) / days_per_unit,
    }
    for name in value_cols:
        # bincount adds weights in row order: the same rows in the same order give the same bits.
        per_day = np.bincount(day_index, weights=rows[name].to_numpy()[order], minlength=len(day_starts))
        per_day[firsts] = 0.0  # the first purchase day is not a repeat purchase
        repeat_total = np.bincount(customer_index, weights=per_day, minlength=len(firsts))
        columns[name] = np.divide(repeat_total, frequency, out=np.zeros(len(firsts)), where=repeat)
    columns["first_purchase_date"] = pl.Series(first_day, dtype=pl.Int32).cast(pl.Date)
    columns["last_purchase_date"] = pl.Series(last_day, dtype=pl.Int32).cast(pl.Date)
    return pl.DataFrame(columns).with_columns(
        pl.col("recency", "T").cast(pl.Float64),
        *[pl.when(pl.col("frequency") > 0).then(pl.col(name)).alias(name) for name in value_cols],
    )


_EPOCH = dt.date(1970, 1, 1)


def _sort_by_customer_and_day(rows: pl.DataFrame, customer_col: str) -> tuple[np.ndarray, ...]:
    """Row positions sorted by (customer, day) with ties in input order, the sorted days, and
    a flag on each customer's first sorted row.

    Integer customer keys are packed with the day and the row position into one unique int64:
    numpy's (SIMD) sort of plain integers is ~10x faster than a stable argsort.
    """
    n = rows.height
    if n and rows.schema[customer_col].is_integer():
        customer, day = rows[customer_col].to_numpy(), rows["_day"].to_numpy()
        low_customer, low_day = customer.min(), int(day.min())
        day_bits = (int(day.max()) - low_day).bit_length()
        position_bits = (n - 1).bit_length()
        if (int(customer.max()) - int(low_customer)).bit_length() + day_bits + position_bits <= 63:
            key = (customer - low_customer).astype(np.int64) << (day_bits + position_bits)
            key |= (day.astype(np.int64) - low_day) << position_bits
            key |= np.arange(n, dtype=np.int64)
            key.sort()
            order = key & ((1 << position_bits) - 1)
            key >>= position_bits
            new_customer = np.ones(n, dtype=bool)
            new_customer[1:] = (key[1:] >> day_bits) != (key[:-1] >> day_bits)
            return order, (key & ((1 << day_bits) - 1)).astype(np.int32) + low_day, new_customer
    order = rows.select(pl.arg_sort_by(customer_col, "_day", maintain_order=True)).to_series().to_numpy()
    customers = rows[customer_col].gather(order)
    new_customer = np.ones(n, dtype=bool)
    if n > 1:
        new_customer[1:] = (customers.slice(1) != customers.slice(0, n - 1)).to_numpy()
    return order, rows["_day"].to_numpy()[order], new_customer


def _as_lazy_polars(frame: Any) -> pl.LazyFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    return pl.from_pandas(frame).lazy()


def _as_day(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Date:
        return expr
    if dtype == pl.String:
        return expr.str.to_datetime().dt.date()
    return expr.dt.date()  # local calendar day for tz-aware timestamps


def _to_date(value: dt.date | dt.datetime | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.datetime.fromisoformat(str(value)).date()


def _days_per_unit(time_unit: str) -> float:
    try:
        return DAYS_PER_UNIT[time_unit]
    except KeyError:
        raise ValueError(f"time_unit must be one of {sorted(DAYS_PER_UNIT)}, got {time_unit!r}") from None


# --------------------------------------------------------------------------------------------
