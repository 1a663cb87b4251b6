"""A simulated campaign with a known uplift per segment, measured by the lift asset.

Three generated worlds (seeds 1-3, 700 persons) are activated at one snapshot; the
campaign-response simulator writes campaign orders into their landing files and the
true effect into ground_truth/uplift.json; ingestion loads the window again and
measurement compares treated with held-out customers.
"""

import datetime as dt
import json

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from segmentation_platform import cli
from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import ingestion, measurement
from segmentation_platform.core.activation import load_activation_config
from segmentation_platform.defs._lib.keys import LIFT_KEY
from segmentation_platform.defs.measurement.assets import INTERVALS_CHECK, build_measurement_assets
from segmentation_platform.synthetic.response import UPLIFT_FILE, ResponseError, simulate_response
from tests.worlds.uplift_world import (
    SNAPSHOT,
    WINDOW,
    UpliftWorld,
    build_uplift_world,
    reingest_window,
)

SEEDS = (1, 2, 3)
MODERATE = {"active": 0.2, "cooling": 0.3, "lapsed": 0.4}
LARGE = {"active": 1.0, "cooling": 1.0, "lapsed": 1.0}
# A 95% interval misses 1 time in 20, fixed seeds or not: over 9 intervals, allow one
# miss per metric (P(two or more) is 7% at exact nominal coverage). Seed 3 spends it: its
# `active` holdout draw buys 2.9 standard errors less than the treated group before any
# campaign, so every scenario misses there; other salts show no such gap on average.
ALLOWED_MISSES = 1


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[int, UpliftWorld]:
    return {seed: build_uplift_world(tmp_path_factory.mktemp(f"uplift{seed}"), seed) for seed in SEEDS}


def campaign(world: UpliftWorld, rates: dict[str, float]) -> tuple[dict, pd.DataFrame]:
    """Simulate the campaign, load its days, measure: (true effects, measured lift per segment)."""
    with world.connect() as conn:
        summary = simulate_response(world.data_dir, conn, SNAPSHOT, rates, seed=world.seed)
    reingest_window(world)
    with world.connect(read_only=True) as conn:
        table = measurement.lift(conn, SNAPSHOT, world.config.experiments)
    return summary.segments, table.set_index("action_segment")


def misses(results, metric: str, value=None) -> list[str]:
    """Segments whose interval does not contain the true value (or `value`)."""
    out = []
    for seed, truth, table in results:
        for segment, row in table.iterrows():
            target = truth[segment][metric] if value is None else value
            if not row[f"{metric}_low"] <= target <= row[f"{metric}_high"]:
                out.append(
                    f"seed {seed} {segment}: {target:+.4f} outside [{row[f'{metric}_low']:+.4f}, "
                    f"{row[f'{metric}_high']:+.4f}]"
                )
    return out


def test_recorded_truth_is_exactly_what_the_campaign_adds_to_the_treated(worlds):
    world = worlds[1]
    zero_truth, before = campaign(world, {})
    truth, after = campaign(world, MODERATE)
    assert all(t["conversion_lift"] == 0 and t["responders"] == 0 for t in zero_truth.values())
    for segment, row in after.iterrows():
        t = truth[segment]
        assert (row["treatment_customers"], row["holdout_customers"]) == (
            t["treatment_customers"],
            t["holdout_customers"],
        )
        # Holdouts are never exported, so nothing changes for them ...
        assert t["leaked_holdouts"] == 0
        assert row["holdout_conversion"] == before.loc[segment, "holdout_conversion"]
        assert row["holdout_revenue_per_customer"] == before.loc[segment, "holdout_revenue_per_customer"]
        # ... and the treated group gains exactly the incremental conversions and revenue recorded.
        gained = row["treatment_conversion"] - before.loc[segment, "treatment_conversion"]
        assert gained == pytest.approx(t["conversion_lift"], abs=1e-12)
        revenue = (
            row["treatment_revenue_per_customer"] - before.loc[segment, "treatment_revenue_per_customer"]
        )
        assert revenue == pytest.approx(t["revenue_lift"], abs=1e-9)
        assert 0 < t["reached_treated"] < t["treatment_customers"]  # consent limits reach
        assert t["incremental_converters"] <= t["responders"] - t["unattributed_responders"]
    assert truth["lapsed"]["conversion_lift"] > 0 and truth["active"]["revenue_lift"] > 0


def test_measured_interval_covers_the_true_uplift_across_seeds(worlds):
    results = [(seed, *campaign(world, MODERATE)) for seed, world in worlds.items()]
    assert sum(len(table) for _, _, table in results) == 9
    for metric in ("conversion_lift", "revenue_lift"):
        missed = misses(results, metric)
        assert len(missed) <= ALLOWED_MISSES, missed
    recorded = json.loads((worlds[2].data_dir / "ground_truth" / UPLIFT_FILE).read_text())
    entry = recorded["campaigns"][SNAPSHOT.isoformat()]
    assert entry["outcome_window_days"] == measurement.SHORT_WINDOW_DAYS
    assert entry["segments"]["cooling"]["response_rate"] == 0.3


def test_no_uplift_measures_zero_and_a_large_one_excludes_zero(worlds):
    null = [(seed, *campaign(world, {})) for seed, world in worlds.items()]
    assert all(
        t["conversion_lift"] == 0 and t["revenue_lift"] == 0 for _, truth, _ in null for t in truth.values()
    )
    assert len(misses(null, "conversion_lift", value=0.0)) <= ALLOWED_MISSES
    large = [(seed, *campaign(world, LARGE)) for seed, world in worlds.items()]
    for seed, truth, table in large:
        assert (table["conversion_lift_low"] > 0).all(), (seed, table["conversion_lift_low"].to_dict())
        assert all(t["conversion_lift"] > 0.1 for t in truth.values())
    assert len(misses(large, "conversion_lift")) <= ALLOWED_MISSES
    assert len(misses(large, "revenue_lift")) <= ALLOWED_MISSES


def test_campaign_orders_are_valid_landing_rows_of_reached_treated_customers(worlds):
    world = worlds[2]
    truth, _ = campaign(world, MODERATE)
    landing = world.data_dir / "landing"
    files = sorted(landing.glob(f"*/*_campaign-{SNAPSHOT.isoformat()}.csv"))
    assert files and {p.parent.name for p in files} <= {"web_orders", "pos_transactions"}
    for source in ("web_orders", "pos_transactions"):
        by_day = {
            d: [p for p in files if p.parent.name == source and p.name.startswith(d.isoformat())]
            for d in WINDOW
        }
        batch = ingestion.parse_landing_files(
            CONTRACTS[source], {d: f for d, f in by_day.items() if f}, dt.datetime(2025, 6, 1), landing
        )
        assert batch.quarantined.height == 0
    with world.connect(read_only=True) as conn:
        loaded = conn.execute(
            "SELECT count(*) FROM (SELECT order_id FROM raw.web_orders WHERE order_id LIKE 'CMP%' "
            "UNION ALL SELECT receipt_id FROM raw.pos_transactions WHERE receipt_id LIKE 'CMP%')"
        ).fetchone()[0]
        buyers = conn.execute(
            "SELECT m.customer_key, bool_or(h.customer_key IS NOT NULL) AS held, "
            "min(r.ordered_at) >= $s AND max(r.ordered_at) < $s + INTERVAL 30 DAY AS in_window "
            "FROM raw.web_orders r JOIN identity.customer_key_map m "
            "ON m.source = 'web_orders' AND m.source_id = r.account_id "
            "LEFT JOIN activation.holdouts h ON h.customer_key = m.customer_key "
            "WHERE r.order_id LIKE 'CMP%' GROUP BY 1",
            {"s": SNAPSHOT},
        ).df()
    assert (
        loaded
        == sum(len(p.read_text().splitlines()) - 1 for p in files)
        == sum(t["responders"] for t in truth.values())
    )
    # Every campaign web order lands on a treated customer's account, inside the window.
    assert len(buyers) > 0 and not buyers["held"].any() and buyers["in_window"].all()


def test_rerunning_the_simulator_is_idempotent(worlds, tmp_path):
    world = worlds[3]
    pattern = f"*/*_campaign-{SNAPSHOT.isoformat()}.csv"
    with world.connect(read_only=True) as conn:
        simulate_response(world.data_dir, conn, SNAPSHOT, LARGE, seed=9)
        first = {p: p.read_bytes() for p in (world.data_dir / "landing").glob(pattern)}
        truth = (world.data_dir / "ground_truth" / UPLIFT_FILE).read_bytes()
        simulate_response(world.data_dir, conn, SNAPSHOT, LARGE, seed=9)
        assert {p: p.read_bytes() for p in (world.data_dir / "landing").glob(pattern)} == first
        assert (world.data_dir / "ground_truth" / UPLIFT_FILE).read_bytes() == truth
        smaller = simulate_response(world.data_dir, conn, SNAPSHOT, {"lapsed": 0.1}, seed=9)
    # Fewer responders, fewer files: the earlier run's files are gone, not left to double count.
    assert sorted((world.data_dir / "landing").glob(pattern)) == smaller.files
    assert len(smaller.files) < len(first)
    assert smaller.segments["active"]["responders"] == 0


def test_simulator_refuses_what_it_cannot_simulate(worlds, tmp_path):
    world = worlds[1]
    with world.connect(read_only=True) as conn:
        with pytest.raises(ResponseError, match="generate through at least 2025-04-08"):
            simulate_response(world.data_dir, conn, SNAPSHOT.replace(day=10), {})
        with pytest.raises(ResponseError, match="nobody is in at 2025-03-03: vip"):
            simulate_response(world.data_dir, conn, SNAPSHOT, {"vip": 0.5})
        with pytest.raises(ResponseError, match=r"probabilities in \[0, 1\]"):
            simulate_response(world.data_dir, conn, SNAPSHOT, {"active": 1.5})
        with pytest.raises(ResponseError, match="materialize activation/exports"):
            simulate_response(world.data_dir, conn, SNAPSHOT, {}, exports_dir=tmp_path)


def test_cli_respond_then_the_lift_asset_measures_the_campaign(worlds, capsys):
    world = worlds[2]
    code = cli.main(
        [
            "respond",
            "--out",
            str(world.data_dir),
            "--snapshot",
            SNAPSHOT.isoformat(),
            "--seed",
            "2",
            *(f"--rate={segment}={rate}" for segment, rate in LARGE.items()),
        ]
    )
    assert code == 0, capsys.readouterr().out
    assert "campaign after 2025-03-03" in capsys.readouterr().out
    assert cli.main(["respond", "--out", str(world.data_dir), "--snapshot", "2025-03-03", "--rate", "x"]) == 2
    assert "expected SEGMENT=RATE" in capsys.readouterr().out
    reingest_window(world)
    truth = json.loads((world.data_dir / "ground_truth" / UPLIFT_FILE).read_text())
    truth = truth["campaigns"][SNAPSHOT.isoformat()]["segments"]
    (lift,) = [
        a for a in build_measurement_assets(load_activation_config(world.config_path)) if LIFT_KEY in a.keys
    ]
    result = dg.materialize(
        [lift],
        partition_key="2025-02-24",  # the week ending at the 2025-03-03 snapshot
        resources={"duckdb": DuckDBResource(database=str(world.warehouse))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == INTERVALS_CHECK and check.passed
    with duckdb.connect(str(world.warehouse), read_only=True) as conn:
        table = conn.execute(
            f"SELECT * FROM {measurement.LIFT_SCHEMA.table} WHERE snapshot_date = ?", [SNAPSHOT]
        ).df()
    assert set(table["action_segment"]) == set(truth)
    assert (table["outcome_window_days"] == measurement.SHORT_WINDOW_DAYS).all()
    small = (table["treatment_customers"] < 30) | (table["holdout_customers"] < 30)
    assert (table["note"].notna() == small).all()  # a rough interval says so, and only then
    assert (table["conversion_lift_low"] > 0).all()
    assert len(misses([(2, truth, table.set_index("action_segment"))], "conversion_lift")) <= ALLOWED_MISSES
