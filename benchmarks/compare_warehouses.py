"""Prove that a change left every warehouse table as it was: row counts and content hashes.

    .venv/bin/python -m benchmarks.compare_warehouses BEFORE.duckdb AFTER.duckdb [--out FILE]

Run the demo on the old and on the new code (same seed), then compare the two warehouses.
A table's hash covers every column (sorted by name, so a reordered table still compares by
content) except the ones stamped with the time of a run: a date/time column whose latest value
lies after the synthetic data (which ends in 2025) records when a run happened, and
`export_id` is a fresh UUID per export. Doubles compare at 12 significant digits (DuckDB's
parallel sums differ in the last bit from run to run), and file paths relative to the data folder
(the two runs write to different folders). Exits 1 when any table differs or exists on one side only.
"""

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path

import duckdb

from segmentation_platform.core.warehouse import column_types, quote, table_checksum, table_ref

DATA_ENDS_BEFORE = datetime(2026, 1, 1)
ALWAYS_VOLATILE = {"export_id"}


def _tables(conn) -> list[str]:
    rows = conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1"
    ).fetchall()
    return [name for (name,) in rows]


def run_time_columns(conn, table: str) -> set[str]:
    stamped = set(ALWAYS_VOLATILE) & set(column_types(conn, table))
    for column, sql_type in column_types(conn, table).items():
        if not (sql_type.startswith("TIMESTAMP") or sql_type == "DATE"):
            continue
        latest = conn.execute(f"SELECT max({quote(column)}) FROM {table_ref(table)}").fetchall()[0][0]
        if isinstance(latest, datetime):
            latest = latest.replace(tzinfo=None)
        elif isinstance(latest, date):
            latest = datetime.combine(latest, datetime.min.time())
        if latest is not None and latest >= DATA_ENDS_BEFORE:
            stamped.add(column)
    return stamped


def _normalised(data_dir: str):
    def value_sql(value: str, sql_type: str) -> str:
        if sql_type in ("DOUBLE", "FLOAT", "REAL"):
            # 12 significant digits: what a user reads; the 16th differs with DuckDB's summation order.
            return f"CASE WHEN {value} = 0 OR NOT isfinite({value}) THEN CAST({value} AS VARCHAR) ELSE printf('%.11e', {value}) END"
        if sql_type == "VARCHAR":
            return f"replace({value}, '{data_dir}', '<data>')"
        return value

    return value_sql


def fingerprint(conn, table: str, exclude: set[str], data_dir: str = "") -> tuple[int, str]:
    """(rows, order-independent md5 over the columns not excluded, doubles and paths normalised)."""
    rows, digest = table_checksum(conn, table, exclude, value_sql=_normalised(data_dir)).split(":", 1)
    return int(rows), digest


def compare(before: Path, after: Path) -> dict:
    old_dir, new_dir = (str(p.resolve().parent).replace("'", "''") for p in (before, after))
    with (
        duckdb.connect(str(before), read_only=True) as old,
        duckdb.connect(str(after), read_only=True) as new,
    ):
        old_tables, new_tables = set(_tables(old)), set(_tables(new))
        report = {
            "only_before": sorted(old_tables - new_tables),
            "only_after": sorted(new_tables - old_tables),
            "tables": {},
        }
        for table in sorted(old_tables & new_tables):
            old_columns, new_columns = column_types(old, table), column_types(new, table)
            stamped = run_time_columns(old, table) | run_time_columns(new, table)
            old_rows, old_hash = fingerprint(old, table, stamped, old_dir)
            new_rows, new_hash = fingerprint(new, table, stamped, new_dir)
            entry = {
                "rows_before": old_rows,
                "rows_after": new_rows,
                "same_content": old_hash == new_hash and old_columns == new_columns,
                "same_column_order": list(old_columns) == list(new_columns),
                "run_time_columns_ignored": sorted(stamped),
            }
            if not entry["same_content"]:
                entry["differing_columns"] = sorted(
                    c
                    for c in set(old_columns) | set(new_columns)
                    if c not in stamped
                    and (
                        c not in old_columns
                        or c not in new_columns
                        or fingerprint(old, table, set(old_columns) - {c}, old_dir)
                        != fingerprint(new, table, set(new_columns) - {c}, new_dir)
                    )
                )
            report["tables"][table] = entry
    report["identical"] = (
        not report["only_before"]
        and not report["only_after"]
        and all(t["same_content"] for t in report["tables"].values())
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path, help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    report = compare(args.before, args.after)
    for table, entry in report["tables"].items():
        verdict = "same" if entry["same_content"] else f"DIFFERS in {', '.join(entry['differing_columns'])}"
        print(f"{table:<42} {entry['rows_before']:>9,} -> {entry['rows_after']:>9,} rows  {verdict}")
    for side in ("only_before", "only_after"):
        for table in report[side]:
            print(f"{table:<42} exists {side.replace('_', ' ')}")
    same = sum(t["same_content"] for t in report["tables"].values())
    print(
        f"\n{same} of {len(report['tables'])} common tables identical; identical overall: {report['identical']}"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
