"""The whole pipeline on generated data: every stage produces rows, checks pass, re-runs change nothing."""

from pathlib import Path

import duckdb
import pytest

from tests.worlds.pipeline_world import PERSONS, SNAPSHOT_DATES, checksums, tables

# The shared pipeline run takes minutes; more on a busy machine than the default 600 s allow.
pytestmark = pytest.mark.timeout(1800)


def test_every_stage_writes_rows(pipeline_world):
    platform, result = pipeline_world.platform, pipeline_world.weekly
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:

        def one(sql: str):
            return conn.execute(sql).fetchall()[0][0]

        counts = {name: one(f"SELECT count(*) FROM {name}") for name in tables(platform.warehouse)}
        for table in (
            "identity.customer_key_map",
            "identity.customers",
            "features.customer_features",
            "models.rfm_scores",
            "models.clv_scores",
            "models.clv_validation",
            "models.behaviour_clusters",
            "segments.assignments",
            "segments.profiles",
            "segments.changelog",
            "activation.holdouts",
            "activation.exports",
            "measurement.segment_kpis",
            "measurement.migration",
        ):
            assert counts.get(table, 0) > 0, f"{table} is empty"

        customers = one("SELECT count(DISTINCT customer_key) FROM identity.customers")
        records = one("SELECT count(*) FROM identity.customer_key_map")
        scored = one("SELECT count(DISTINCT snapshot_date) FROM models.churn_scores")
        snapshots = one("SELECT count(DISTINCT snapshot_date) FROM segments.assignments")
        one_each = one(
            "SELECT count(*) FROM (SELECT customer_key, snapshot_date FROM segments.assignments "
            "GROUP BY ALL HAVING count(*) > 1)"
        )
    # Records of one person merge: far fewer customers than records, never fewer than persons by much.
    assert 0.9 * PERSONS <= customers < 0.6 * records
    assert snapshots == len(SNAPSHOT_DATES) and one_each == 0
    assert scored > 0  # later snapshots have complete 90-day label windows behind them
    failed_errors = [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity.value == "ERROR"
    ]
    assert failed_errors == []
    assert list(Path(platform.data_dir, "reports").rglob("report.html"))


def test_rerunning_identity_changes_no_table(pipeline_world):
    """Re-running a snapshot (model refits included) is tested in test_weekly_backfill.py,
    and every stage at once through the daemon in tests/e2e/test_instance_backfill.py."""
    platform = pipeline_world.platform
    before = checksums(platform.warehouse)
    assert {"identity.customer_key_map", "models.clv_scores", "models.registry"} <= set(before)
    platform.run("identity_resolution")
    after = checksums(platform.warehouse)
    assert [name for name in before if after.get(name) != before[name]] == []
    assert after == before


def test_every_table_is_exactly_its_declared_schema(pipeline_world):
    """One declaration per table (core.catalog): the warehouse holds exactly the declared
    tables, each with the declared columns and types, and each asset's column schema in the
    UI is the same declaration (descriptions and PII tags included)."""
    from segmentation_platform.core.catalog import table_schemas
    from segmentation_platform.core.warehouse import column_types
    from segmentation_platform.defs._lib.config import load_platform_config
    from segmentation_platform.defs._lib.keys import key_of

    config = load_platform_config()
    declared = {schema.table: schema for schema in table_schemas(config.features, config.scheme)}
    specs = {spec.key: spec for asset in pipeline_world.platform.defs.assets for spec in asset.specs}
    assert sorted(tables(pipeline_world.platform.warehouse)) == sorted(declared)
    with duckdb.connect(str(pipeline_world.platform.warehouse), read_only=True) as conn:
        for table, schema in declared.items():
            assert list(column_types(conn, table).items()) == list(schema.sql_columns.items()), table
            if key_of(table) not in specs:  # models.registry: written by every model asset, no asset
                continue
            shown = specs[key_of(table)].metadata["dagster/column_schema"].columns
            assert [(c.name, c.type, c.description, "pii" in c.tags) for c in shown] == [
                (c.name, c.sql_type, c.description, c.pii) for c in schema.columns
            ], table
    assert [t for t in declared if key_of(t) not in specs] == ["models.registry"]
