import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segmentation_platform.core import activation, measurement, warehouse
from segmentation_platform.core.activation import load_activation_config
from segmentation_platform.core.measurement import _kpis as measurement_kpis
from tests.worlds.activation_world import SNAPSHOTS, build_world, write_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("measurement")
    built = build_world(folder / "warehouse.duckdb", customers=1500, conversion_uplift=0.25)
    config = load_activation_config(write_config(folder))
    with built.connect() as conn:
        for snapshot in SNAPSHOTS:
            activation.write_holdouts(conn, snapshot, config)
    built.extras["config"] = config
    return built


@pytest.fixture
def conn(world):
    with world.connect(read_only=True) as connection:
        yield connection


def simulate_holdout_outcomes(
    seed: int,
    treatment_customers: int = 4000,
    holdout_customers: int = 1000,
    base_conversion: float = 0.10,
    conversion_uplift: float = 0.03,
    mean_order_value: float = 60.0,
    order_value_sigma: float = 0.8,
    action_segment: str = "simulated",
    experiment: str = "simulation",
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-customer outcomes of a randomized holdout with a known effect: the estimators alone, no warehouse.

    Converters spend a log-normal order value with the same mean in both groups, so the
    true revenue lift per customer is `conversion_uplift * mean_order_value`. Returns the
    per-customer outcomes (the shape `lift_table` takes) and the true effects.
    """
    rng = np.random.default_rng(seed)
    mu = math.log(mean_order_value) - order_value_sigma**2 / 2
    groups = []
    for name, n, rate in (
        ("treatment", treatment_customers, base_conversion + conversion_uplift),
        ("holdout", holdout_customers, base_conversion),
    ):
        converted = rng.random(n) < rate
        revenue = np.where(converted, rng.lognormal(mu, order_value_sigma, n), 0.0)
        groups.append(
            pd.DataFrame(
                {
                    "customer_key": [f"{name}-{i}" for i in range(n)],
                    "action_segment": action_segment,
                    "experiment": experiment,
                    "group": name,
                    "converted": converted,
                    "revenue": revenue,
                }
            )
        )
    truth = {"conversion_lift": conversion_uplift, "revenue_lift": conversion_uplift * mean_order_value}
    return pd.concat(groups, ignore_index=True), truth


def test_newcombe_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10.
    difference, low, high = measurement.newcombe_difference(56, 70, 48, 80)
    assert difference == pytest.approx(0.2)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_welch_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(3, 1, 300), rng.lognormal(2.9, 1.2, 120)
    difference, low, high = measurement.welch_difference(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert difference == pytest.approx(a.mean() - b.mean())
    assert (low, high) == pytest.approx((reference.low, reference.high))


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_lift_interval_covers_a_known_uplift(seed):
    outcomes, truth = simulate_holdout_outcomes(seed, conversion_uplift=0.04)
    (row,) = measurement.lift_table(outcomes).to_dict("records")
    assert row["conversion_lift_low"] <= truth["conversion_lift"] <= row["conversion_lift_high"]
    assert row["revenue_lift_low"] <= truth["revenue_lift"] <= row["revenue_lift_high"]


def test_lift_intervals_have_their_nominal_coverage():
    covered = {"conversion_lift": 0, "revenue_lift": 0}
    runs = 200
    for seed in range(runs):
        outcomes, truth = simulate_holdout_outcomes(
            seed, treatment_customers=900, holdout_customers=300, base_conversion=0.08, conversion_uplift=0.02
        )
        (row,) = measurement.lift_table(outcomes).to_dict("records")
        for name in covered:
            covered[name] += row[f"{name}_low"] <= truth[name] <= row[f"{name}_high"]
    for name, hits in covered.items():
        assert 0.9 <= hits / runs <= 0.99, (name, hits / runs)


def test_lift_in_the_warehouse_detects_the_built_in_treatment_effect(world, conn):
    table = measurement.lift(conn, SNAPSHOTS[0], world.extras["config"].experiments)
    assert set(table["action_segment"]) == {"champions", "loyal", "at_risk", "win_back"}
    assert table["note"].isna().all() or not table["note"].str.contains("pending").any()
    held = conn.execute(
        "SELECT count(*) FROM activation.holdouts WHERE snapshot_date = ?", [SNAPSHOTS[0]]
    ).fetchone()[0]
    assert table["holdout_customers"].sum() == held
    assert (table["treatment_customers"] + table["holdout_customers"]).sum() == 1480  # 20 arrive later
    pooled = table[["conversion_lift", "revenue_lift"]].mean()
    assert pooled["conversion_lift"] > 0.05 and pooled["revenue_lift"] > 0
    assert (table["conversion_lift_low"] <= table["conversion_lift"]).all()


def test_lift_waits_for_its_outcome_window(world):
    late = dt.date(2025, 4, 14)  # 30 days after it are not loaded
    with world.connect() as writable:
        writable.execute(
            "INSERT INTO segments.assignments SELECT * REPLACE (DATE '2025-04-14' AS snapshot_date) "
            "FROM segments.assignments WHERE snapshot_date = ?",
            [SNAPSHOTS[-1]],
        )
        activation.write_holdouts(writable, late, world.extras["config"])
        table = measurement.lift(writable, late, world.extras["config"].experiments)
        kpis = measurement.segment_kpis(writable, late)
        writable.execute("DELETE FROM segments.assignments WHERE snapshot_date = DATE '2025-04-14'")
        writable.execute("DELETE FROM activation.holdouts WHERE snapshot_date = DATE '2025-04-14'")
    assert table["conversion_lift"].isna().all() and table["treatment_customers"].gt(0).all()
    assert table["note"].str.contains("needs purchases through 2025-05-13").all()
    assert kpis[["revenue_30d", "revenue_90d", "realized_churn_rate_90d"]].isna().all().all()
    assert kpis["customers"].sum() == 1500


def test_segment_kpis_match_a_direct_computation(world, conn):
    snapshot = SNAPSHOTS[0]
    kpis = measurement.segment_kpis(conn, snapshot).set_index("action_segment")
    assert kpis["customers"].sum() == 1480
    assert kpis["share_of_customers"].sum() == pytest.approx(1)
    purchases = conn.execute(f"SELECT * FROM ({measurement.purchases_sql(conn)})").df()
    segments = conn.execute(
        "SELECT customer_key, action_segment FROM segments.assignments WHERE snapshot_date = ?", [snapshot]
    ).df()
    start = pd.Timestamp(snapshot)
    within = purchases[
        (purchases["purchased_at"] >= start) & (purchases["purchased_at"] < start + pd.Timedelta(days=30))
    ]
    expected = within.merge(segments, on="customer_key").groupby("action_segment")["amount"].sum()
    assert kpis["revenue_30d"].to_dict() == pytest.approx(expected.to_dict())
    # 90 days after the first snapshot reach past the loaded data: pending, with a note.
    assert kpis["revenue_90d"].isna().all() and kpis["note"].str.contains("90-day outcomes pending").all()
    assert kpis["data_through"].iloc[0] == world.data_through


def test_realized_churn_when_the_long_window_is_loaded(world, conn, monkeypatch):
    monkeypatch.setattr(measurement_kpis, "LONG_WINDOW_DAYS", 60)
    kpis = measurement.segment_kpis(conn, SNAPSHOTS[0])
    assert kpis["realized_churn_rate_90d"].between(0, 1).all() and kpis["note"].isna().all()
    assert (kpis["revenue_90d"] >= kpis["revenue_30d"]).all()


def test_channel_kpis(world, conn):
    snapshot = SNAPSHOTS[0]
    channels = measurement.channel_kpis(conn, snapshot).set_index("acquisition_channel")
    # Customers acquired in the window but without a feature row yet have an unknown channel.
    assert set(channels.index) - {"unknown"} == {"search", "social", "email", "organic"}
    assert channels.loc["search", "spend"] == pytest.approx(40.0 * 90)
    assert channels["new_customers"].sum() > 0
    search = channels.loc["search"]
    assert search["cac"] == pytest.approx(search["spend"] / search["new_customers"])
    assert search["ltv_to_cac"] == pytest.approx(search["mean_cltv_new_customers"] / search["cac"])
    assert search["payback_months"] == pytest.approx(search["cac"] / search["monthly_margin_per_customer"])
    assert channels.loc["organic", "cac"] == 0 and "organic" in channels.loc["organic", "note"]
    assert math.isnan(channels.loc["organic", "ltv_to_cac"])


def test_migration_conserves_customers(world, conn):
    first = measurement.migration_matrix(conn, SNAPSHOTS[0])
    assert (
        set(first["from_segment"]) == {measurement.NEW_SEGMENT}
        and first["previous_snapshot_date"].isna().all()
    )
    third = measurement.migration_matrix(conn, SNAPSHOTS[2])
    assert third["previous_snapshot_date"].iloc[0] == SNAPSHOTS[1]
    assert third.loc[third["from_segment"] == measurement.NEW_SEGMENT, "customers"].sum() == 20
    now = conn.execute(
        "SELECT action_segment, count(*) AS n FROM segments.assignments WHERE snapshot_date = ? GROUP BY 1",
        [SNAPSHOTS[2]],
    ).df()
    inflow = third.groupby("to_segment")["customers"].sum()
    assert inflow.to_dict() == dict(zip(now["action_segment"], now["n"], strict=True))
    assert third.groupby("from_segment")["share_of_from"].sum().round(9).eq(1).all()
    stayed = third[third["from_segment"] == third["to_segment"]]["customers"].sum()
    assert 0.6 * 1480 < stayed < 1480  # ~15% move each week


def test_rerunning_measurement_reproduces_every_table_bit_for_bit(world):
    """DuckDB's threads deliver rows to a sum in any order; no KPI may depend on that order."""
    tables = {
        measurement.SEGMENT_KPIS_SCHEMA: measurement.segment_kpis,
        measurement.CHANNEL_KPIS_SCHEMA: measurement.channel_kpis,
        measurement.MIGRATION_SCHEMA: measurement.migration_matrix,
        measurement.LIFT_SCHEMA: lambda conn, snapshot: measurement.lift(
            conn, snapshot, world.extras["config"].experiments
        ),
    }

    def run() -> dict[str, str]:
        with world.connect() as writable:
            writable.execute("SET threads = 4")
            for snapshot in SNAPSHOTS[1:3]:
                for schema, compute in tables.items():
                    warehouse.replace_partitions(
                        writable,
                        schema.table,
                        compute(writable, snapshot),
                        "snapshot_date",
                        [snapshot],
                        columns=schema.sql_columns,
                    )
            return {schema.table: warehouse.table_checksum(writable, schema.table) for schema in tables}

    first = run()
    assert all(checksum.split(":")[0] != "0" for checksum in first.values())
    for _ in range(2):
        assert run() == first


def test_check_rules():
    snapshot = SNAPSHOTS[0]
    table = pd.DataFrame(
        {
            "action_segment": ["a", "b", "c"],
            "conversion_lift": [0.1, 0.3, np.nan],
            "conversion_lift_low": [0.0, 0.0, np.nan],
            "conversion_lift_high": [0.2, 0.2, np.nan],
            "revenue_lift": [1.0, 1.0, np.nan],
            "revenue_lift_low": [1.0, 0.5, np.nan],
            "revenue_lift_high": [1.0, 2.0, np.nan],
        }
    )
    # On the bound counts as inside; a pending (NULL) lift is not judged.
    assert measurement.lifts_outside_intervals(table, snapshot) == [f"{snapshot} b conversion_lift"]


def test_kpis_and_migration_satisfy_their_check_rules(conn):
    for snapshot in SNAPSHOTS[1:3]:
        kpis = measurement.segment_kpis(conn, snapshot)
        assert measurement.kpis_cover_assignments(conn, snapshot, kpis) is None
        assert measurement.kpis_cover_assignments(conn, snapshot, kpis.iloc[1:]) is not None
        flows = measurement.migration_matrix(conn, snapshot)
        assert measurement.flows_conserve_customers(conn, snapshot, flows) is None
        broken = measurement.flows_conserve_customers(conn, snapshot, flows.iloc[1:])
        assert broken and set(broken) == {"flows_in", "assigned"}
