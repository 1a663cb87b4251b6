from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from segmentation_platform.contracts import EMAIL_EVENTS, WEB_ORDERS
from segmentation_platform.core import warehouse
from segmentation_platform.core.ingestion import (
    LandingFileError,
    landing_files,
    parse_landing_files,
    raw_schema,
)

DAY = date(2025, 3, 1)
LOADED = datetime(2025, 3, 2, 6, 0)


def _write(root: Path, source: str, name: str, content: str | bytes) -> Path:
    folder = root / source
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _parse(root: Path, contract=WEB_ORDERS, day=DAY):
    return parse_landing_files(contract, {day: landing_files(root, contract.name, day)}, LOADED, root)


def test_each_bad_row_is_quarantined_once_with_its_reason(tmp_path):
    _write(
        tmp_path,
        "web_orders",
        "2025-03-01.csv",
        "order_id,account_id,ordered_at,amount,email\n"
        "O1,A1,2025-03-01 10:00:00,12.50, Ann@X.com \n"
        "O2,A2,2025-03-01 11:00:00,-3,\n"
        "O3,,2025-03-01 11:00:00,5,\n"
        "O4,A4,31/02/2025,5,\n"
        "O5,A5,2025-03-01 12:00:00,5,x,extra\n"
        "O1,A1,2025-03-01 10:00:00,12.50, Ann@X.com \n"
        "O6,A6,2025-03-01T12:00:00,abc,\n"
        "O7,A7,2025-03-01,7,\n",
    )
    batch = _parse(tmp_path)
    assert batch.accepted["order_id"].to_list() == ["O1", "O7"]
    assert batch.accepted["amount"].to_list() == [12.5, 7.0]
    assert batch.accepted["ordered_at"][1] == datetime(2025, 3, 1)
    reasons = {
        row["_line"]: (row["column_name"], row["reason"]) for row in batch.quarantined.iter_rows(named=True)
    }
    assert reasons == {
        3: ("amount", "-3 is below the minimum 0"),
        4: ("account_id", "required value is missing"),
        5: ("ordered_at", "'31/02/2025' is not a valid timestamp"),
        6: (None, "expected 5 fields, found 6 (stray or unquoted delimiter?)"),
        7: ("order_id", "duplicate key order_id=O1 (first seen at web_orders/2025-03-01.csv line 2)"),
        8: ("amount", "'abc' is not a valid decimal"),
    }
    raw_lines = dict(zip(batch.quarantined["_line"], batch.quarantined["raw_record"], strict=True))
    assert raw_lines[6] == "O5,A5,2025-03-01 12:00:00,5,x,extra"
    assert batch.landing_counts["landing_rows"].to_list() == [8]
    assert len(batch.accepted) + len(batch.quarantined) == 8


def test_optional_columns_may_be_absent_and_columns_in_any_order(tmp_path):
    _write(
        tmp_path,
        "web_orders",
        "2025-03-01.csv",
        "amount,ordered_at,account_id,order_id\n9.5,2025-03-01 08:00:00,A1,O1\n",
    )
    batch = _parse(tmp_path)
    row = batch.accepted.row(0, named=True)
    assert (row["order_id"], row["account_id"], row["amount"], row["email"]) == ("O1", "A1", 9.5, None)
    assert list(batch.accepted.columns) == raw_schema(WEB_ORDERS).names


def test_several_files_for_one_day_and_parquet(tmp_path):
    _write(
        tmp_path,
        "web_orders",
        "2025-03-01.csv",
        "order_id,account_id,ordered_at,amount\nO1,A1,2025-03-01 08:00:00,1\n",
    )
    pl.DataFrame(
        {"order_id": ["O2"], "account_id": ["A2"], "ordered_at": [datetime(2025, 3, 1, 9)], "amount": [2.0]}
    ).write_parquet(tmp_path / "web_orders" / "2025-03-01_app.parquet")
    _write(
        tmp_path,
        "web_orders",
        "2025-03-02.csv",
        "order_id,account_id,ordered_at,amount\nO3,A3,2025-03-02 08:00:00,3\n",
    )
    batch = _parse(tmp_path)
    assert sorted(batch.accepted["order_id"].to_list()) == ["O1", "O2"]
    assert batch.accepted.filter(pl.col("order_id") == "O2")["ordered_at"][0] == datetime(2025, 3, 1, 9)


def test_missing_required_column_names_file_and_column(tmp_path):
    _write(
        tmp_path,
        "web_orders",
        "2025-03-01.csv",
        "order_id,customer,ordered_at,amount\nO1,A1,2025-03-01 08:00:00,1\n",
    )
    with pytest.raises(
        LandingFileError, match=r"web_orders/2025-03-01.csv: missing required column\(s\) account_id"
    ):
        _parse(tmp_path)


def test_garbage_bytes_fail_with_a_clear_message(tmp_path):
    _write(
        tmp_path,
        "web_orders",
        "2025-03-01.csv",
        b"order_id,account_id,ordered_at,amount\nO1,A1,\xff\xfe\x00garbage,1\n",
    )
    with pytest.raises(
        LandingFileError, match=r"web_orders/2025-03-01.csv: not UTF-8 text \(byte 0xff at line 2\)"
    ):
        _parse(tmp_path)


def test_missing_day_names_the_expected_file(tmp_path):
    (tmp_path / "web_orders").mkdir()
    with pytest.raises(
        LandingFileError, match=r"no landing file for 2025-03-01 in .*web_orders/ \(expected 2025-03-01.csv"
    ):
        _parse(tmp_path)


def test_email_events_need_email_or_subscriber_and_a_known_type(tmp_path):
    _write(
        tmp_path,
        "email_events",
        "2025-03-01.csv",
        "event_id,occurred_at,event_type,email,subscriber_id\n"
        "E1,2025-03-01 08:00:00,open,a@x.com,\n"
        "E2,2025-03-01 08:00:00,open,,\n"
        "E3,2025-03-01 08:00:00,forward,,S1\n",
    )
    batch = _parse(tmp_path, EMAIL_EVENTS)
    assert batch.accepted["event_id"].to_list() == ["E1"]
    assert dict(zip(batch.quarantined["_line"], batch.quarantined["reason"], strict=True)) == {
        3: "one of email, subscriber_id is required",
        4: "'forward' is not one of send, open, click, unsubscribe, bounce",
    }


def test_replace_partitions_inserts_by_name_and_replaces(tmp_path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    columns = {"_partition_date": "DATE", "a": "VARCHAR", "b": "DOUBLE"}
    first = pl.DataFrame({"b": [1.0, 2.0], "a": ["x", "y"], "_partition_date": [DAY, DAY]})
    warehouse.replace_partitions(conn, "raw.t", first.to_arrow(), "_partition_date", [DAY], columns=columns)
    assert conn.execute("SELECT a, b FROM raw.t ORDER BY a").fetchall() == [("x", 1.0), ("y", 2.0)]
    again = pl.DataFrame({"_partition_date": [DAY], "a": ["z"], "b": [3.0]})
    warehouse.replace_partitions(conn, "raw.t", again.to_arrow(), "_partition_date", [DAY], columns=columns)
    assert conn.execute("SELECT a, b FROM raw.t").fetchall() == [("z", 3.0)]


def test_reconciliation_rule():
    from segmentation_platform.core.ingestion import reconcile_with_landing

    days = [date(2025, 1, 1), date(2025, 1, 2)]
    counts = pl.DataFrame(
        {
            "_partition_date": [days[0], days[0], days[1]],
            "_source_file": ["a", "b", "c"],
            "landing_rows": [3, 2, 4],
        }
    )
    good = reconcile_with_landing(counts, {days[0]: 4, days[1]: 4}, {days[0]: 1, days[1]: 0}, days)
    assert good.passed and good.landing == {days[0]: 5, days[1]: 4}
    bad = reconcile_with_landing(counts, {days[0]: 4, days[1]: 3}, {days[0]: 1, days[1]: 0}, days)
    assert not bad.passed
    assert bad.mismatches == {"2025-01-02": {"landing": 4, "accepted": 3, "quarantined": 0}}
