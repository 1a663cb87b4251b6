"""The before/after proof of the architecture change (benchmarks/compare_warehouses.py)."""

import duckdb

from benchmarks.compare_warehouses import compare


def _warehouse(folder, revenue: float, stamp: str):
    folder.mkdir()
    path = folder / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA models")
        conn.execute(
            "CREATE TABLE models.t (customer_key VARCHAR, revenue DOUBLE, path VARCHAR, fitted_at TIMESTAMP)"
        )
        conn.execute(
            "INSERT INTO models.t VALUES ('a', ?, ?, ?), ('b', 2.0, NULL, ?)",
            [revenue, f"{folder}/exports/x.csv", stamp, stamp],
        )
    return path


def test_same_content_in_other_folders_and_run_times_is_identical(tmp_path):
    before = _warehouse(tmp_path / "before", 0.1 + 0.2, "2026-12-07 03:00:00")
    after = _warehouse(tmp_path / "after", 0.3, "2026-12-07 05:00:00")  # 0.1 + 0.2 != 0.3 in the last bit
    report = compare(before, after)
    assert report["identical"], report
    assert report["tables"]["models.t"]["run_time_columns_ignored"] == ["fitted_at"]


def test_a_changed_value_names_its_column(tmp_path):
    before = _warehouse(tmp_path / "before", 1.0, "2026-12-07 03:00:00")
    after = _warehouse(tmp_path / "after", 1.001, "2026-12-07 03:00:00")
    report = compare(before, after)
    assert not report["identical"]
    assert report["tables"]["models.t"]["differing_columns"] == ["revenue"]
