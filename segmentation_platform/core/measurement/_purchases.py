"""What every measurement reads: the identified purchases, how far the warehouse holds them,
and order-free exact sums (so a re-run reproduces every KPI bit for bit).

Outcomes are read from the days *after* the snapshot, so a snapshot is only measured
once the warehouse holds all of its outcome window; until then the numbers are NULL and
a note (`pending_note`) says what data is still missing, instead of a misleadingly low number.
"""

import datetime as dt

import duckdb

from segmentation_platform.contracts import POS_TRANSACTIONS, WEB_ORDERS, SourceContract
from segmentation_platform.core import warehouse
from segmentation_platform.core.warehouse import tables

PURCHASE_SOURCES: tuple[SourceContract, ...] = (WEB_ORDERS, POS_TRANSACTIONS)
SHORT_WINDOW_DAYS, LONG_WINDOW_DAYS = 30, 90


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


def existing_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return warehouse.table_columns(conn, table) if warehouse.table_exists(conn, table) else []


def purchases_sql(conn: duckdb.DuckDBPyConnection) -> str:
    """A subquery of every identified purchase: customer_key, purchased_at, amount, cost.

    Rows reach a customer through the key map with the same `person_ref` SQL identity
    resolution used, so the two can never disagree about whose purchase it is.
    """
    if not warehouse.table_exists(conn, tables.CUSTOMER_KEY_MAP):
        raise MeasurementError(f"{tables.CUSTOMER_KEY_MAP} does not exist: run identity resolution first")
    parts = []
    for contract in PURCHASE_SOURCES:
        columns = existing_columns(conn, tables.raw_table(contract.name))
        if not columns:
            continue
        # person_ref may name optional columns a table created from a narrower load lacks.
        absent = ", ".join(
            f"CAST(NULL AS {c.duckdb_type}) AS {c.name}" for c in contract.columns if c.name not in columns
        )
        source = f"SELECT *{', ' + absent if absent else ''} FROM {tables.raw_table(contract.name)}"
        parts.append(
            f"SELECT m.customer_key, CAST(r.{contract.event_time} AS TIMESTAMP) AS purchased_at, "
            f"CAST(r.amount AS DOUBLE) AS amount, CAST(r.cost AS DOUBLE) AS cost "
            f"FROM (SELECT *, CAST({contract.person_ref} AS VARCHAR) AS _person FROM ({source})) r "
            f"JOIN {tables.CUSTOMER_KEY_MAP} m ON m.source = '{contract.name}' AND m.source_id = r._person"
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
        columns = existing_columns(conn, tables.raw_table(contract.name))
        if not columns:
            continue
        if "_partition_date" in columns:
            last = conn.execute(
                f"SELECT max(_partition_date) FROM {tables.raw_table(contract.name)}"
            ).fetchone()[0]
        else:
            last = conn.execute(
                f"SELECT max(CAST({contract.event_time} AS DATE)) FROM {tables.raw_table(contract.name)}"
            ).fetchone()[0]
        if last is not None:
            ends.append(last + dt.timedelta(days=1))
    return min(ends) if ends else None


def window_complete(snapshot: dt.date, days: int, through: dt.date | None) -> bool:
    return through is not None and snapshot + dt.timedelta(days=days) <= through


def pending_note(snapshot: dt.date, days: int, through: dt.date | None, what: str) -> str:
    needed = snapshot + dt.timedelta(days=days)
    held = through.isoformat() if through else "nothing"
    return f"{what} pending: needs purchases through {needed - dt.timedelta(days=1)}, warehouse holds up to {held} (exclusive)"
