from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import warehouse
from segmentation_platform.core.config import ConfigError
from segmentation_platform.core.features import (
    CONFIG_PATH,
    FeatureConfig,
    LifecycleThresholds,
    compute_customer_features,
    feature_columns,
    feature_dictionary_markdown,
    feature_registry,
    load_feature_config,
    order_coverage,
)
from segmentation_platform.core.ingestion import METADATA_COLUMNS, raw_table_columns

REPO = Path(__file__).resolve().parents[3]
SNAPSHOT = date(2025, 3, 3)
CUTOFF = datetime(2025, 3, 3)
LOADED = datetime(2025, 6, 1)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def load(conn, source: str, rows: list[dict]) -> None:
    """Append rows to raw.<source> as ingestion would; a row may override the metadata columns."""
    contract = CONTRACTS[source]
    if not warehouse.table_columns(conn, f"raw.{source}"):
        warehouse.ensure_table(conn, f"raw.{source}", raw_table_columns(contract))
    full = []
    for line, row in enumerate(rows, start=2):
        day = row[contract.event_time].date()
        defaults = {
            "_partition_date": day,
            "_source_file": f"{source}/{day}.csv",
            "_line": line,
            "_loaded_at": LOADED,
        }
        full.append(defaults | row)
    names = list(dict.fromkeys(name for row in full for name in row))
    conn.register("_rows", pa.table({name: [row.get(name) for row in full] for name in names}))
    conn.execute(f"INSERT INTO raw.{source} BY NAME SELECT * FROM _rows")
    conn.unregister("_rows")


def map_keys(conn, pairs: list[tuple[str, str, str]]) -> None:
    warehouse.ensure_table(
        conn,
        "identity.customer_key_map",
        {"source": "VARCHAR", "source_id": "VARCHAR", "customer_key": "VARCHAR"},
    )
    if pairs:
        conn.executemany("INSERT INTO identity.customer_key_map VALUES (?, ?, ?)", pairs)


def create_raw_tables(conn) -> None:
    for contract in CONTRACTS.values():
        warehouse.ensure_table(conn, f"raw.{contract.name}", raw_table_columns(contract))


@pytest.fixture
def conn():
    with duckdb.connect() as connection:
        create_raw_tables(connection)
        yield connection


@pytest.fixture
def shop(conn):
    """C1 buys on web and in store, C2 by phone-only receipt, C3 only reads email, C4-C8 for edges."""
    web = [
        dict(order_id="W1", account_id="A1", ordered_at=ts("2025-01-10 10:00"), amount=100.0,
             category="shoes", cost=60.0, discount=0.0, acquisition_channel="paid_search"),
        dict(order_id="W2", account_id="A1", ordered_at=ts("2025-02-01 12:00"), amount=50.0,
             category="bags", cost=20.0, discount=10.0),
        dict(order_id="W3", account_id="A1", ordered_at=ts("2025-03-02 23:59:59"), amount=30.0,
             category="shoes"),
        dict(order_id="W4", account_id="A4", ordered_at=ts("2024-12-03 09:00"), amount=10.0),
        dict(order_id="W5", account_id="A5", ordered_at=ts("2024-12-02 09:00"), amount=10.0),
        dict(order_id="W6", account_id="A6", ordered_at=ts("2024-01-01 09:00"), amount=10.0),
        dict(order_id="W7", account_id="A7", ordered_at=ts("2024-08-15 09:00"), amount=10.0),
    ]  # fmt: skip
    load(conn, "web_orders", web)
    # The same order delivered again in a later file, corrected: the later load wins.
    x1 = dict(order_id="X1", account_id="A8", ordered_at=ts("2025-02-01 08:00"), amount=10.0)
    load(conn, "web_orders", [x1, x1 | dict(amount=12.0, _partition_date=date(2025, 2, 2))])
    load(
        conn,
        "pos_transactions",
        [
            dict(receipt_id="R1", store_id="S1", purchased_at=ts("2025-02-01 15:00"), amount=20.0,
                 loyalty_id="L1", category="bags", cost=10.0, discount=0.0),
            dict(receipt_id="R2", store_id="S1", purchased_at=ts("2025-02-20 11:00"), amount=15.0,
                 phone="+15550001111"),
            dict(receipt_id="R3", store_id="S2", purchased_at=ts("2025-02-20 12:00"), amount=99.0),
        ],
    )  # fmt: skip
    load(
        conn,
        "crm_contacts",
        [
            dict(contact_id="K1", updated_at=ts("2024-12-20 09:00"), email_consent=True, sms_consent=False,
                 acquisition_channel="referral"),
            dict(contact_id="K1", updated_at=ts("2025-02-10 09:00"), email_consent=True, sms_consent=True),
        ],
    )  # fmt: skip
    load(
        conn,
        "email_events",
        [
            dict(event_id="E1", occurred_at=ts("2024-11-01 08:00"), event_type="send", subscriber_id="S1"),
            dict(event_id="E2", occurred_at=ts("2025-01-10 08:00"), event_type="send", subscriber_id="S1"),
            dict(event_id="E3", occurred_at=ts("2025-02-20 08:00"), event_type="send", subscriber_id="S1"),
            dict(event_id="E4", occurred_at=ts("2025-02-21 08:00"), event_type="open", subscriber_id="S1"),
            dict(event_id="E5", occurred_at=ts("2025-02-21 08:01"), event_type="click", subscriber_id="S1"),
            dict(event_id="E6", occurred_at=ts("2025-02-25 08:00"), event_type="unsubscribe", subscriber_id="S1"),
            dict(event_id="E7", occurred_at=ts("2025-02-26 08:00"), event_type="send", email=" Reader@X.com"),
        ],
    )  # fmt: skip
    load(
        conn,
        "support_tickets",
        [
            dict(ticket_id="T1", created_at=ts("2025-02-15 10:00"), contact_id="K1", satisfaction=4),
            dict(ticket_id="T2", created_at=ts("2024-10-01 10:00"), contact_id="K1", satisfaction=2),
            dict(ticket_id="T3", created_at=ts("2025-01-20 10:00"), contact_id="K1"),
        ],
    )
    map_keys(
        conn,
        [
            ("web_orders", "A1", "C1"),
            ("pos_transactions", "L1", "C1"),
            ("crm_contacts", "K1", "C1"),
            ("email_events", "S1", "C1"),
            ("support_tickets", "T1", "C1"),
            ("support_tickets", "T2", "C1"),
            ("support_tickets", "T3", "C1"),
            ("pos_transactions", "receipt:R2", "C2"),
            ("email_events", "email:reader@x.com", "C3"),
            *((("web_orders", f"A{i}", f"C{i}")) for i in range(4, 9)),
        ],
    )
    return conn


def rows_by_key(table: pa.Table) -> dict[str, dict]:
    return {row["customer_key"]: row for row in table.to_pylist()}


def test_features_of_a_customer_match_hand_computation(shop):
    c1 = rows_by_key(compute_customer_features(shop, SNAPSHOT))["C1"]
    first, last = ts("2025-01-10 10:00"), ts("2025-03-02 23:59:59")
    expected = {
        "snapshot_date": SNAPSHOT,
        "lifecycle_stage": "active",
        "first_purchase_at": first,
        "last_purchase_at": last,
        "recency_days": 1,
        "frequency": 4,
        "repeat_frequency": 2,
        "monetary_total": 200.0,
        "monetary_avg": 50.0,
        "web_orders": 3,
        "pos_orders": 1,
        "web_revenue_share": 0.9,
        "purchase_channels": "omnichannel",
        "distinct_categories": 2,
        "category_entropy": 1.0,
        "top_category": "bags",
        "top_category_share": 0.5,
        "discount_share": 10 / 180,
        "discounted_order_share": 1 / 3,
        "contribution_margin": 80.0,
        "margin_rate": 80 / 170,
        "email_sends_30d": 1,
        "email_opens_30d": 1,
        "email_clicks_30d": 1,
        "email_sends_90d": 2,
        "email_opens_90d": 1,
        "email_clicks_90d": 1,
        "email_open_rate_90d": 0.5,
        "email_click_rate_90d": 0.5,
        "support_tickets_90d": 2,
        "support_tickets_total": 3,
        "support_satisfaction_mean": 3.0,
        "acquisition_channel": "referral",
        "email_consent": False,
        "sms_consent": True,
        "unsubscribed": True,
        "first_seen_at": ts("2024-10-01 10:00"),
        "last_seen_at": last,
        "tenure_days": (SNAPSHOT - date(2024, 10, 1)).days,
    }
    for name, value in expected.items():
        assert c1[name] == (pytest.approx(value) if isinstance(value, float) else value), name
    assert c1["mean_interpurchase_days"] == pytest.approx((last - first) / timedelta(days=1) / 3)


def test_columns_and_types_are_exactly_the_registry(shop):
    table = compute_customer_features(shop, SNAPSHOT)
    assert table.column_names == [f.name for f in feature_registry(load_feature_config())]
    shop.register("_features", table)
    described = dict(shop.execute("SELECT column_name, column_type FROM (DESCRIBE _features)").fetchall())
    assert described == feature_columns(load_feature_config())


def test_orders_without_a_person_count_in_no_customer(shop):
    customers = rows_by_key(compute_customer_features(shop, SNAPSHOT))
    assert sum(row["frequency"] for row in customers.values()) == 4 + 1 + 4 + 1
    assert customers["C2"]["pos_orders"] == 1 and customers["C2"]["lifecycle_stage"] == "new"
    assert order_coverage(shop, SNAPSHOT) == {
        "orders": 11,
        "customer_orders": 10,
        "anonymous_orders": 1,
        "unmapped_orders": 0,
    }


def test_a_customer_known_only_from_email_is_a_prospect(shop):
    c3 = rows_by_key(compute_customer_features(shop, SNAPSHOT))["C3"]
    assert c3["lifecycle_stage"] == "prospect"
    assert (c3["frequency"], c3["monetary_total"], c3["recency_days"], c3["purchase_channels"]) == (
        0,
        0,
        None,
        None,
    )
    assert (c3["email_sends_30d"], c3["email_open_rate_90d"], c3["unsubscribed"]) == (1, 0.0, False)


def test_lifecycle_stages_follow_configured_thresholds(shop):
    stages = {
        k: r["lifecycle_stage"] for k, r in rows_by_key(compute_customer_features(shop, SNAPSHOT)).items()
    }
    # C4 bought exactly 90 days before the snapshot, C5 91, C7 200, C6 427.
    assert [stages[k] for k in ("C4", "C5", "C7", "C6")] == ["active", "at_risk", "dormant", "lost"]
    tighter = FeatureConfig(
        lifecycle=LifecycleThresholds(
            new_within_days=100, active_within_days=30, at_risk_within_days=60, dormant_within_days=120
        )
    )
    stages = {
        k: r["lifecycle_stage"]
        for k, r in rows_by_key(compute_customer_features(shop, SNAPSHOT, tighter)).items()
    }
    assert [stages[k] for k in ("C4", "C5", "C7", "C6", "C1")] == ["new", "new", "lost", "lost", "new"]


def test_an_order_loaded_twice_counts_once_with_its_latest_version(shop):
    c8 = rows_by_key(compute_customer_features(shop, SNAPSHOT))["C8"]
    assert (c8["frequency"], c8["monetary_total"]) == (1, 12.0)


def test_rows_at_or_after_the_snapshot_change_nothing(shop):
    before = compute_customer_features(shop, SNAPSHOT)
    at = CUTOFF  # 00:00 on the snapshot date belongs to the next snapshot
    load(shop, "web_orders", [dict(order_id="F1", account_id="A1", ordered_at=at, amount=1000.0, category="toys",
                                  acquisition_channel="tv")])  # fmt: skip
    load(
        shop,
        "web_orders",
        [dict(order_id="W1", account_id="A1", ordered_at=at + timedelta(days=3), amount=1.0)],
    )
    load(
        shop,
        "pos_transactions",
        [dict(receipt_id="F2", store_id="S1", purchased_at=at, amount=5.0, loyalty_id="L1")],
    )
    load(shop, "crm_contacts", [dict(contact_id="K1", updated_at=at, email_consent=True, sms_consent=False,
                                    acquisition_channel="tv")])  # fmt: skip
    load(shop, "email_events", [dict(event_id="F3", occurred_at=at, event_type="open", subscriber_id="S1"),
                                dict(event_id="F4", occurred_at=at, event_type="send", subscriber_id="S9")])  # fmt: skip
    load(shop, "support_tickets", [dict(ticket_id="F5", created_at=at, contact_id="K1", satisfaction=1)])
    map_keys(shop, [("support_tickets", "F5", "C1"), ("email_events", "S9", "C9")])
    after = compute_customer_features(shop, SNAPSHOT)
    assert after.equals(before)
    later = rows_by_key(compute_customer_features(shop, SNAPSHOT + timedelta(days=7)))
    assert later["C1"]["frequency"] == 5 + 1 and "C9" in later


def test_sources_with_required_columns_only_still_yield_features():
    with duckdb.connect() as conn:
        for contract in CONTRACTS.values():
            required = {c: contract.column(c).duckdb_type for c in contract.required_columns}
            warehouse.ensure_table(conn, f"raw.{contract.name}", required | METADATA_COLUMNS)
        conn.execute("DROP TABLE raw.support_tickets")  # a source never delivered at all
        load(
            conn,
            "web_orders",
            [dict(order_id="W1", account_id="A1", ordered_at=ts("2025-02-01 10:00"), amount=5.0)],
        )
        load(conn, "pos_transactions", [dict(receipt_id="R1", store_id="S1", purchased_at=ts("2025-02-02 10:00"),
                                             amount=7.0)])  # fmt: skip
        load(conn, "crm_contacts", [dict(contact_id="K1", updated_at=ts("2025-01-02 10:00"))])
        map_keys(conn, [("web_orders", "A1", "C1"), ("crm_contacts", "K1", "C1")])
        table = compute_customer_features(conn, SNAPSHOT)
    (row,) = table.to_pylist()
    assert (row["customer_key"], row["frequency"], row["monetary_total"], row["lifecycle_stage"]) == (
        "C1",
        1,
        5.0,
        "new",
    )
    assert row["distinct_categories"] == 0 and row["top_category"] is None and row["margin_rate"] is None
    assert row["first_seen_at"] == ts("2025-01-02 10:00") and row["email_consent"] is None


def test_consent_follows_the_latest_statement_before_the_snapshot(conn):
    load(
        conn,
        "crm_contacts",
        [
            dict(contact_id="K1", updated_at=ts("2025-02-01 09:00"), email_consent=True),
            dict(contact_id="K2", updated_at=ts("2025-02-20 09:00"), email_consent=True, sms_consent=True),
            dict(contact_id="K3", updated_at=ts("2025-02-01 09:00"), email_consent=True, sms_consent=True),
            dict(contact_id="K4", updated_at=ts("2025-02-01 09:00"), email_consent=False, sms_consent=False),
        ],
    )
    load(
        conn,
        "email_events",
        [
            dict(
                event_id="U1",
                occurred_at=ts("2025-02-10 08:00"),
                event_type="unsubscribe",
                subscriber_id="S1",
            ),
            dict(
                event_id="U2",
                occurred_at=ts("2025-02-10 08:00"),
                event_type="unsubscribe",
                subscriber_id="S2",
            ),
        ],
    )
    # K3 and K4 are two CRM contacts of one customer saved at the same instant: consent withheld wins.
    map_keys(
        conn,
        [
            ("crm_contacts", "K1", "C1"),
            ("email_events", "S1", "C1"),
            ("crm_contacts", "K2", "C2"),
            ("email_events", "S2", "C2"),
            ("crm_contacts", "K3", "C3"),
            ("crm_contacts", "K4", "C3"),
        ],
    )
    rows = rows_by_key(compute_customer_features(conn, SNAPSHOT))
    consent = {k: (r["email_consent"], r["sms_consent"], r["unsubscribed"]) for k, r in rows.items()}
    assert consent == {"C1": (False, None, True), "C2": (True, True, True), "C3": (False, False, False)}


def test_acquisition_channel_comes_from_the_earliest_record_naming_one(conn):
    load(conn, "web_orders", [
        dict(order_id="W1", account_id="A1", ordered_at=ts("2025-01-05 10:00"), amount=5.0),
        dict(order_id="W2", account_id="A1", ordered_at=ts("2025-01-06 10:00"), amount=5.0, acquisition_channel="seo"),
    ])  # fmt: skip
    load(
        conn,
        "crm_contacts",
        [dict(contact_id="K1", updated_at=ts("2025-01-07 10:00"), acquisition_channel="tv")],
    )
    map_keys(conn, [("web_orders", "A1", "C1"), ("crm_contacts", "K1", "C1")])
    (row,) = compute_customer_features(conn, SNAPSHOT).to_pylist()
    assert row["acquisition_channel"] == "seo"


def test_a_key_map_holding_a_record_twice_is_refused(conn):
    map_keys(conn, [("web_orders", "A1", "C1"), ("web_orders", "A1", "C2")])
    with pytest.raises(ValueError, match=r"more than once.*web_orders: 1 \(e.g. 'A1'\)"):
        compute_customer_features(conn, SNAPSHOT)


def test_a_missing_key_map_says_what_to_run(conn):
    with pytest.raises(ValueError, match="identity.customer_key_map does not exist: materialize identity"):
        compute_customer_features(conn, SNAPSHOT)


def test_no_customers_yields_an_empty_table_with_every_column(conn):
    map_keys(conn, [])
    table = compute_customer_features(conn, SNAPSHOT)
    assert table.num_rows == 0 and table.column_names == list(feature_columns(load_feature_config()))


def test_feature_dictionary_is_generated_from_the_registry():
    text = (REPO / "docs" / "feature_dictionary.md").read_text()
    assert text == feature_dictionary_markdown(), (
        "docs/feature_dictionary.md is stale: run "
        "`python -m segmentation_platform.core.features > docs/feature_dictionary.md`"
    )
    for feature in feature_registry(load_feature_config()):
        assert f"| {feature.name} | {feature.sql_type} |" in text


def test_shipped_config_loads():
    config = load_feature_config(CONFIG_PATH)
    assert config.lifecycle.active_within_days < config.lifecycle.dormant_within_days
    assert config.email_windows_days == (30, 90)


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (("lifecycle:", "lifecycle:\n  activ_within_days: 3"), "lifecycle.activ_within_days", "unknown field"),
        (("active_within_days: 90", "active_within_days: soon"), "lifecycle.active_within_days", "must be an integer"),
        (("at_risk_within_days: 180", "at_risk_within_days: 60"), "lifecycle.at_risk_within_days",
         "must be greater than active_within_days (90)"),
        (("[30, 90]", "[30, 0]"), "engagement.email_windows_days", "expected positive whole days"),
        (("support_window_days: 90", "support_window_days: -1"), "engagement.support_window_days",
         "must be at least 1"),
        (("  support_window_days: 90\n", ""), "support_window_days", "missing required field"),
        (("version: 1", "version: [1"), None, "invalid YAML"),
    ],
)  # fmt: skip
def test_bad_config_names_file_line_key_and_reason(tmp_path, change, key, reason):
    text = CONFIG_PATH.read_text()
    assert change[0] in text
    path = tmp_path / "features.yaml"
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as error:
        load_feature_config(path)
    message = str(error.value)
    assert error.value.file == str(path) and error.value.line, message
    assert message.startswith(f"{path}:{error.value.line}: "), message  # file:line: reason
    assert (key is None or key in error.value.reason) and reason in error.value.reason, message
    if key is not None and "missing" not in reason:
        # the line is the offending key's line
        assert change[1].splitlines()[-1].strip() in path.read_text().splitlines()[error.value.line - 1]


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yaml: .*cannot read file"):
        load_feature_config(tmp_path / "nowhere.yaml")
