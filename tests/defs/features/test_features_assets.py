from datetime import date, datetime

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import warehouse
from segmentation_platform.core.ingestion import METADATA_COLUMNS, raw_table_columns
from segmentation_platform.defs._lib.config import load_platform_config
from segmentation_platform.defs._lib.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from segmentation_platform.defs.features.assets import build_feature_assets
from segmentation_platform.defs.models.rfm import build_rfm_assets

CONFIG = load_platform_config()
(rfm_scores,) = build_rfm_assets(CONFIG.rfm)
feature_assets = build_feature_assets(CONFIG.features)
(customer_features,) = feature_assets

# Weekly partition 2025-02-24 .. 2025-03-03: its snapshot is taken at 00:00 on 2025-03-03.
PARTITION, SNAPSHOT = "2025-02-24", date(2025, 3, 3)
EARLIER_PARTITION, EARLIER_SNAPSHOT = "2025-02-17", date(2025, 2, 24)

WEB = [
    dict(order_id="W1", account_id="A1", ordered_at=datetime(2025, 1, 8, 10), amount=40.0),
    dict(order_id="W2", account_id="A1", ordered_at=datetime(2025, 2, 12, 10), amount=60.0),
    dict(order_id="W3", account_id="A2", ordered_at=datetime(2025, 2, 26, 9), amount=25.0),
    dict(order_id="W4", account_id="A4", ordered_at=datetime(2025, 1, 2, 9), amount=5.0),
]
POS = [
    dict(
        receipt_id="R1", store_id="S1", purchased_at=datetime(2025, 2, 20, 15), amount=12.0, loyalty_id="L1"
    ),
    dict(receipt_id="R2", store_id="S1", purchased_at=datetime(2025, 2, 21, 15), amount=80.0),
]
CRM = [dict(contact_id="K3", updated_at=datetime(2025, 1, 15, 9))]
EMAILS = [dict(event_id="E1", occurred_at=datetime(2025, 2, 25, 8), event_type="send", subscriber_id="S1")]
KEY_MAP = [
    ("web_orders", "A1", "C1"),
    ("pos_transactions", "L1", "C1"),
    ("email_events", "S1", "C1"),
    ("web_orders", "A2", "C2"),
    ("crm_contacts", "K3", "C3"),
    ("web_orders", "A4", "C4"),
]


def insert(conn, source: str, rows: list[dict]) -> None:
    contract = CONTRACTS[source]
    full = [
        {"_partition_date": row[contract.event_time].date(), "_source_file": "test.csv", "_line": i + 2}
        | {"_loaded_at": datetime(2025, 3, 5)}
        | row
        for i, row in enumerate(rows)
    ]
    names = list(dict.fromkeys(name for row in full for name in row))
    conn.register("_rows", pa.table({name: [row.get(name) for row in full] for name in names}))
    conn.execute(f"INSERT INTO raw.{source} BY NAME SELECT * FROM _rows")
    conn.unregister("_rows")


def build_warehouse(path, required_only: bool = False) -> None:
    """Raw tables as ingestion leaves them (or with required columns only) plus a key map."""
    with duckdb.connect(str(path)) as conn:
        for contract in CONTRACTS.values():
            columns = raw_table_columns(contract)
            if required_only:
                columns = {
                    c: contract.column(c).duckdb_type for c in contract.required_columns
                } | METADATA_COLUMNS
            warehouse.ensure_table(conn, f"raw.{contract.name}", columns)
        for source, rows in (
            ("web_orders", WEB),
            ("pos_transactions", POS),
            ("crm_contacts", CRM),
            ("email_events", EMAILS),
        ):
            if required_only:
                required = CONTRACTS[source].required_columns
                rows = [{k: v for k, v in row.items() if k in required} for row in rows]
            insert(conn, source, rows)
        warehouse.ensure_table(
            conn,
            "identity.customer_key_map",
            {"source": "VARCHAR", "source_id": "VARCHAR", "customer_key": "VARCHAR"},
        )
        conn.executemany("INSERT INTO identity.customer_key_map VALUES (?, ?, ?)", KEY_MAP)


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    return path


def materialize(
    path, partition_key: str | None = None, tags: dict | None = None
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [*feature_assets, rfm_scores],
        resources={"duckdb": DuckDBResource(database=str(path))},
        partition_key=partition_key,
        tags=tags,
    )
    assert result.success
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert not failed, failed
    return result


def table_rows(path, table: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def test_features_and_rfm_of_one_snapshot(database):
    result = materialize(database, PARTITION)
    with duckdb.connect(str(database), read_only=True) as conn:
        stages = dict(
            conn.execute(
                "SELECT customer_key, lifecycle_stage FROM features.customer_features WHERE snapshot_date = ?",
                [SNAPSHOT],
            ).fetchall()
        )
        rfm = conn.execute(
            "SELECT customer_key, rfm_code, rfm_segment FROM models.rfm_scores ORDER BY 1"
        ).fetchall()
    assert stages == {"C1": "active", "C2": "new", "C3": "prospect", "C4": "active"}
    assert [row[0] for row in rfm] == ["C1", "C2", "C4"] and all(row[2] for row in rfm)
    checks = {c.check_name for c in result.get_asset_check_evaluations()}
    assert checks == {
        "one_row_per_customer_per_snapshot",
        "reads_no_data_after_snapshot",
        "scores_between_1_and_5",
        "every_row_has_a_segment",
        "scores_every_purchaser",
    }
    features_metadata = result.asset_materializations_for_node(customer_features.op.name)[0].metadata
    assert features_metadata["dagster/partition_row_count"].value == 4
    assert "| prospect | 1 (25%) |" in features_metadata["lifecycle_stages"].value
    assert features_metadata["anonymous_orders"].value == 1
    rfm_metadata = result.asset_materializations_for_node(rfm_scores.op.name)[0].metadata
    assert "| **total** | 3 |" in rfm_metadata["segments"].value


def test_rerunning_a_partition_replaces_it(database):
    materialize(database, PARTITION)
    features, scores = (
        table_rows(database, "features.customer_features"),
        table_rows(database, "models.rfm_scores"),
    )
    materialize(database, PARTITION)
    assert table_rows(database, "features.customer_features") == features
    assert table_rows(database, "models.rfm_scores") == scores


def test_future_rows_change_nothing_for_an_earlier_snapshot(database):
    materialize(database, EARLIER_PARTITION)
    features, scores = (
        table_rows(database, "features.customer_features"),
        table_rows(database, "models.rfm_scores"),
    )
    future = datetime(2025, 2, 24)  # 00:00 on the snapshot date already belongs to the next one
    with duckdb.connect(str(database)) as conn:
        insert(conn, "web_orders", [dict(order_id="F1", account_id="A1", ordered_at=future, amount=999.0)])
        insert(conn, "web_orders", [dict(order_id="F2", account_id="A9", ordered_at=future, amount=5.0)])
        insert(
            conn,
            "email_events",
            [dict(event_id="F3", occurred_at=future, event_type="open", subscriber_id="S1")],
        )
        conn.execute("INSERT INTO identity.customer_key_map VALUES ('web_orders', 'A9', 'C9')")
    materialize(database, EARLIER_PARTITION)
    assert table_rows(database, "features.customer_features") == features
    assert table_rows(database, "models.rfm_scores") == scores
    assert all(row[0] == EARLIER_SNAPSHOT for row in features)


def test_a_backfill_range_runs_once_and_writes_every_snapshot(database):
    result = materialize(
        database,
        tags={PARTITION_RANGE_START_TAG: "2025-02-10", PARTITION_RANGE_END_TAG: PARTITION},
    )
    assert len(result.get_asset_materialization_events()) == 2 * 3
    with duckdb.connect(str(database), read_only=True) as conn:
        counts = conn.execute(
            "SELECT snapshot_date, count(*) FROM features.customer_features GROUP BY 1 ORDER BY 1"
        ).fetchall()
    # C2 first buys on 2025-02-26, so only the last snapshot knows them.
    assert counts == [(date(2025, 2, 17), 3), (date(2025, 2, 24), 3), (SNAPSHOT, 4)]


def test_sources_with_required_columns_only_flow_through(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path, required_only=True)
    materialize(path, PARTITION)
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT customer_key, frequency, top_category, email_sends_30d FROM features.customer_features ORDER BY 1"
        ).fetchall()
    # Without loyalty_id the store receipts are anonymous; C1 keeps its web orders only.
    assert rows == [("C1", 2, None, 0), ("C2", 1, None, 0), ("C3", 0, None, 0), ("C4", 1, None, 0)]
