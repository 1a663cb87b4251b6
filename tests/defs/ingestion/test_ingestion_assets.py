import shutil
from datetime import date

import duckdb
import polars as pl
import pytest

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core.warehouse import table_checksum
from segmentation_platform.defs.ingestion.assets import CONTRACT_CHECK, RECONCILIATION_CHECK
from tests.conftest import Platform


def _query(platform, sql, params=None):
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def test_every_broken_row_is_quarantined_with_a_reason_and_none_reaches_raw(small_platform):
    broken = pl.read_parquet(small_platform.data_dir / "ground_truth" / "broken_rows.parquet")
    assert broken.height > 40 and broken["kind"].n_unique() >= 5
    for source in CONTRACTS:
        expected = {
            (f, line) for f, line in broken.filter(pl.col("source") == source).select("file", "line").rows()
        }
        quarantined = set(
            _query(small_platform, f"SELECT _source_file, _line FROM quarantine.{source} WHERE reason <> ''")
        )
        in_raw = set(_query(small_platform, f"SELECT _source_file, _line FROM raw.{source}"))
        assert expected <= quarantined, (
            f"{source}: broken rows missing from quarantine: {sorted(expected - quarantined)[:5]}"
        )
        assert not expected & in_raw, f"{source}: broken rows in raw"
    # The generator corrupts nothing else: quarantine holds exactly the broken rows.
    total = sum(_query(small_platform, f"SELECT count(*) FROM quarantine.{s}")[0][0] for s in CONTRACTS)
    assert total == broken.height


def test_reconciliation_holds_per_partition(small_platform):
    landing = small_platform.data_dir / "landing"
    for source in CONTRACTS:
        accepted = dict(
            _query(small_platform, f"SELECT _partition_date, count(*) FROM raw.{source} GROUP BY 1")
        )
        rejected = dict(
            _query(small_platform, f"SELECT _partition_date, count(*) FROM quarantine.{source} GROUP BY 1")
        )
        for path in sorted((landing / source).glob("*.csv")):
            day = date.fromisoformat(path.stem)
            data_rows = len(path.read_text().splitlines()) - 1
            assert accepted.get(day, 0) + rejected.get(day, 0) == data_rows, (source, day)


def test_checks_ran_and_passed(small_platform):
    result = small_platform.run("daily_ingestion", date(2025, 1, 3), date(2025, 1, 3))
    evaluations = {
        (e.asset_key.path[1], e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }
    assert evaluations == {(s, c): True for s in CONTRACTS for c in (RECONCILIATION_CHECK, CONTRACT_CHECK)}


def _fingerprint(platform):
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        return {
            f"{schema}.{source}": table_checksum(conn, f"{schema}.{source}")
            for schema in ("raw", "quarantine")
            for source in CONTRACTS
        }


def test_rerunning_partitions_changes_nothing(small_platform):
    before = _fingerprint(small_platform)
    small_platform.run("daily_ingestion", date(2025, 1, 10), date(2025, 1, 10))
    small_platform.run("daily_ingestion")
    assert _fingerprint(small_platform) == before


@pytest.fixture
def scratch_platform(small_platform, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(small_platform.data_dir / "landing", data_dir / "landing")
    return Platform(data_dir, small_platform.start, small_platform.end)


def test_missing_required_column_fails_the_partition_naming_file_and_column(scratch_platform):
    path = scratch_platform.data_dir / "landing" / "web_orders" / "2025-01-05.csv"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("account_id", "acct_id")  # schema drift: a renamed column
    path.write_text("\n".join(lines) + "\n")
    result = scratch_platform.run("daily_ingestion", date(2025, 1, 5), date(2025, 1, 5), expect_success=False)
    messages = " ".join(m for m in _failures(result))
    assert "web_orders/2025-01-05.csv: missing required column(s) account_id" in messages
    # The other sources of the same day still loaded.
    assert _query(scratch_platform, "SELECT count(*) FROM raw.pos_transactions")[0][0] > 0


def test_garbage_bytes_fail_with_a_clear_message(scratch_platform):
    path = scratch_platform.data_dir / "landing" / "pos_transactions" / "2025-01-06.csv"
    path.write_bytes(path.read_bytes()[:200] + b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + b"\x00" * 20)
    result = scratch_platform.run("daily_ingestion", date(2025, 1, 6), date(2025, 1, 6), expect_success=False)
    assert "pos_transactions/2025-01-06.csv: not UTF-8 text (byte 0x89 at line" in " ".join(_failures(result))


def _failures(result):
    from segmentation_platform.demo import failure_messages

    return failure_messages(result)


def test_raw_and_quarantine_tables_are_exactly_their_declared_schema(small_platform):
    """One declaration per table: the tables written, and the assets' column schemas in the UI."""
    from segmentation_platform.core import ingestion
    from segmentation_platform.core.warehouse import column_types
    from segmentation_platform.defs._lib.keys import key_of
    from segmentation_platform.defs.ingestion.assets import build_ingestion_assets

    specs = {key: spec for a in build_ingestion_assets() for key, spec in a.specs_by_key.items()}
    declared = [
        schema
        for contract in CONTRACTS.values()
        for schema in (ingestion.raw_schema(contract), ingestion.quarantine_schema(contract.name))
    ]
    assert {s.table for s in declared} == {s.table for s in ingestion.TABLE_SCHEMAS}
    with duckdb.connect(str(small_platform.warehouse), read_only=True) as conn:
        for schema in declared:
            assert list(column_types(conn, schema.table).items()) == list(schema.sql_columns.items())
            spec = specs[key_of(schema.table)]
            assert spec.metadata["dagster/table_name"] == f"warehouse.{schema.table}"
            shown = spec.metadata["dagster/column_schema"].columns
            assert [(c.name, c.type, c.description, "pii" in c.tags) for c in shown] == [
                (c.name, c.sql_type, c.description, c.pii) for c in schema.columns
            ]
    assert ingestion.raw_schema(CONTRACTS["web_orders"]).column("email").pii
