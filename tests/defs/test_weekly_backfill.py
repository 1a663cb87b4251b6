"""A backfill of 26 weekly snapshots gives 26 partitions of every weekly asset; re-running one
of them changes no table, model tables included."""

from datetime import timedelta

import duckdb
import pytest

from segmentation_platform.core.warehouse import table_columns
from segmentation_platform.defs._lib.jobs import WEEKLY_SEGMENTATION
from segmentation_platform.defs._lib.partitions import weekly_snapshots
from tests.worlds.pipeline_world import SNAPSHOT_DATES, WEEKLY_KEYS, checksums, tables

# Stages that score every customer who exists at a snapshot: a row set per snapshot from the first.
EVERY_SNAPSHOT = (
    "features.customer_features",
    "models.rfm_scores",
    "models.behaviour_clusters",
    "segments.assignments",
    "segments.profiles",
    "activation.holdouts",
    "measurement.segment_kpis",
)


# The shared pipeline run takes minutes; more on a busy machine than the default 600 s allow.
pytestmark = pytest.mark.timeout(1800)


def test_every_weekly_asset_has_26_partitions(pipeline_world):
    assert len(WEEKLY_KEYS) == 26
    weekly_assets = [
        spec.key
        for spec in pipeline_world.platform.defs.resolve_all_asset_specs()
        if spec.partitions_def == weekly_snapshots
    ]
    assert len(weekly_assets) >= 10
    instance = pipeline_world.platform.instance
    for key in weekly_assets:
        assert instance.get_materialized_partitions(key) == set(WEEKLY_KEYS), key.to_user_string()


def test_weekly_tables_hold_one_snapshot_per_partition(pipeline_world):
    warehouse = pipeline_world.platform.warehouse
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        per_table = {}
        for name in tables(warehouse):
            if "snapshot_date" in table_columns(conn, name):
                dates = conn.execute(f"SELECT DISTINCT snapshot_date FROM {name} ORDER BY 1").fetchall()
                per_table[name] = [d for (d,) in dates]
    assert set(EVERY_SNAPSHOT) <= set(per_table)
    for name in EVERY_SNAPSHOT:
        assert per_table[name] == SNAPSHOT_DATES, name
    # Models that need history start later, then never miss a week.
    for name, dates in per_table.items():
        assert dates == SNAPSHOT_DATES[len(SNAPSHOT_DATES) - len(dates) :], name
    # CLTV needs 50 repeat buyers before its first fit: a few weeks into the shop's history.
    assert 18 <= len(per_table["models.clv_scores"]) < 26
    assert len(per_table["models.clv_validation"]) >= 1 and len(per_table["models.churn_scores"]) >= 1


def test_rerunning_one_snapshot_changes_nothing(pipeline_world):
    platform = pipeline_world.platform
    before = checksums(platform.warehouse)
    window = weekly_snapshots.time_window_for_partition_key(WEEKLY_KEYS[17])
    start, end = window.start.date(), window.end.date() - timedelta(days=1)
    result = platform.run(WEEKLY_SEGMENTATION, start, end)
    assert {m.partition for m in result.get_asset_materialization_events() if m.partition} == {
        WEEKLY_KEYS[17]
    }
    after = checksums(platform.warehouse)
    assert [name for name in before if after.get(name) != before[name]] == []
    assert after == before
    # What the UI shows for a one-snapshot run: the whole table's rows, and the snapshot's.
    tables_of = {
        spec.key: spec.metadata["dagster/table_name"].removeprefix("warehouse.")
        for spec in platform.defs.resolve_all_asset_specs()
        if "dagster/table_name" in spec.metadata
    }
    reported, actual = {}, {}
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        for event in result.get_asset_materialization_events():
            materialization = event.materialization
            table = tables_of.get(materialization.asset_key)
            if table is None:
                continue
            metadata = {k: v.value for k, v in materialization.metadata.items()}
            reported[table] = (metadata.get("dagster/row_count"), metadata.get("dagster/partition_row_count"))
            by_snapshot = "snapshot_date" in table_columns(conn, table)
            actual[table] = (
                conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0],
                conn.execute(
                    f"SELECT count(*) FROM {table} WHERE snapshot_date = ?", [SNAPSHOT_DATES[17]]
                ).fetchall()[0][0]
                if by_snapshot
                else None,
            )
    assert len(reported) >= 12
    assert reported == actual


def test_a_snapshot_too_early_to_validate_keeps_no_stale_rows(pipeline_world):
    """A snapshot without a complete holdout window has no CLTV validation: a re-run empties
    whatever an earlier run (or a larger data set) left under it."""
    platform = pipeline_world.platform
    before = checksums(platform.warehouse)
    with duckdb.connect(str(platform.warehouse)) as conn:
        assert conn.execute(
            "SELECT count(*) FROM models.clv_validation WHERE snapshot_date = ?", [SNAPSHOT_DATES[0]]
        ).fetchall() == [(0,)]
        conn.execute("INSERT INTO models.clv_validation (snapshot_date) VALUES (?)", [SNAPSHOT_DATES[0]])
    window = weekly_snapshots.time_window_for_partition_key(WEEKLY_KEYS[0])
    platform.run(WEEKLY_SEGMENTATION, window.start.date(), window.end.date() - timedelta(days=1))
    assert checksums(platform.warehouse) == before
