"""Owned DuckDB writes.

The stock dagster-duckdb type handlers insert by column *position*; every write here
goes `BY NAME`, so a frame whose columns come in another order (or lack an optional
column) lands correctly. Partitioned tables are replaced partition by partition inside
one transaction, which makes every re-run idempotent.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence

import duckdb


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def table_ref(table: str) -> str:
    """`schema.table` quoted for SQL."""
    return ".".join(quote(part) for part in table.split("."))


def ensure_table(conn: duckdb.DuckDBPyConnection, table: str, columns: Mapping[str, str]) -> None:
    """Create the table, or add the columns it lacks (schema evolution of optional columns)."""
    schema = table.split(".")[0]
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    column_sql = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns.items())
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table_ref(table)} ({column_sql})")
    existing = set(table_columns(conn, table))
    for name, sql_type in columns.items():
        if name not in existing:
            conn.execute(f"ALTER TABLE {table_ref(table)} ADD COLUMN {quote(name)} {sql_type}")


def column_types(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> SQL type (information_schema's data_type), in table order."""
    schema, name = table.split(".")
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    return dict(rows)


def table_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return list(column_types(conn, table))


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    # fetchall, not fetchone: with duckdb 2.0 an unexhausted result keeps the connection busy
    # and the next register() fails with ResourceInUseException.
    rows = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchall()
    return bool(rows[0][0])


def replace_partitions(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    frame,
    partition_column: str,
    partition_values: Iterable,
    columns: Mapping[str, str] | None = None,
) -> int:
    """Replace every row of the given partitions with `frame`; returns rows written.

    `frame` is anything DuckDB scans (pandas, polars, Arrow). Partitions listed but
    absent from the frame end up empty, so a re-run over fewer rows leaves no stale rows.
    """
    values = list(partition_values)
    if columns is not None:
        ensure_table(conn, table, columns)
    conn.register("_frame_to_write", frame)
    try:
        conn.execute("BEGIN TRANSACTION")
        conn.execute(
            f"DELETE FROM {table_ref(table)} WHERE {quote(partition_column)} IN (SELECT unnest(?))",
            [values],
        )
        conn.execute(f"INSERT INTO {table_ref(table)} BY NAME SELECT * FROM _frame_to_write")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.unregister("_frame_to_write")
    return len(frame)


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame) -> int:
    """Replace a whole (unpartitioned) table atomically."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.split('.')[0])}")
    conn.register("_frame_to_write", frame)
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {table_ref(table)} AS SELECT * FROM _frame_to_write")
    finally:
        conn.unregister("_frame_to_write")
    return len(frame)


def row_count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rows of the whole table (0 while it does not exist): what `dagster/row_count` reports."""
    if not table_exists(conn, table):
        return 0
    # fetchall, not fetchone: duckdb 2.0 keeps a fetchone() result open and refuses the next register().
    return conn.execute(f"SELECT count(*) FROM {table_ref(table)}").fetchall()[0][0]


def count_by(conn: duckdb.DuckDBPyConnection, table: str, column: str, values: Sequence) -> dict:
    """Row counts of `table` per value of `column`, restricted to `values` (zeros included)."""
    counts = dict.fromkeys(values, 0)
    if not table_exists(conn, table):
        return counts
    rows = conn.execute(
        f"SELECT {quote(column)}, count(*) FROM {table_ref(table)} "
        f"WHERE {quote(column)} IN (SELECT unnest(?)) GROUP BY 1",
        [list(values)],
    ).fetchall()
    counts.update(dict(rows))
    return counts


def table_checksum(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    exclude: Iterable[str] = ("_loaded_at",),
    value_sql: Callable[[str, str], str] | None = None,
) -> str:
    """`rows:md5`, an order-independent content hash of a table, for proving that a re-run (or a
    refactor) changed nothing. Columns are hashed by name, so a reordered table hashes the same;
    `value_sql(quoted_column, sql_type)` may normalise what is hashed (e.g. round doubles)."""
    types = column_types(conn, table)
    excluded = set(exclude)
    as_text = value_sql or (lambda column, _type: column)
    row = (
        " || '|' || ".join(
            f"coalesce(CAST({as_text(quote(c), types[c])} AS VARCHAR), '<null>')"
            for c in sorted(types)
            if c not in excluded
        )
        or "''"
    )
    return conn.execute(
        f"SELECT count(*) || ':' || coalesce(md5(string_agg(r, chr(10) ORDER BY r)), '') "
        f"FROM (SELECT {row} AS r FROM {table_ref(table)})"
    ).fetchone()[0]
