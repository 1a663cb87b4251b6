"""The measurement assets, built from config, materialized over the activation world."""

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import activation, measurement
from segmentation_platform.core.activation import load_activation_config
from segmentation_platform.core.warehouse import column_types
from segmentation_platform.defs._lib.config import load_platform_config
from segmentation_platform.defs._lib.keys import LIFT_KEY, REPORT_KEY, key_of
from segmentation_platform.defs.activation.assets import OutputFolders
from segmentation_platform.defs.measurement import definitions
from segmentation_platform.defs.measurement.assets import (
    COVERS_SEGMENTS_CHECK,
    FLOWS_CONSERVE_CHECK,
    INTERVALS_CHECK,
    build_measurement_assets,
)
from tests.worlds.activation_world import SNAPSHOTS, build_world, write_config

RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2025-02-10",
    "dagster/asset_partition_range_end": "2025-02-24",
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("measurement_assets")
    world = build_world(folder / "warehouse.duckdb")
    config = load_activation_config(write_config(folder))
    with world.connect() as conn:
        for snapshot in SNAPSHOTS:
            activation.write_holdouts(conn, snapshot, config)
    assets = build_measurement_assets(config)
    result = dg.materialize(
        assets,
        resources={
            "duckdb": DuckDBResource(database=str(world.path)),
            "output_folders": OutputFolders(
                exports_dir=str(folder / "exports"), reports_dir=str(folder / "reports")
            ),
        },
        tags=RANGE_TAGS,
        instance=dg.DagsterInstance.ephemeral(),
    )
    return world, assets, result, folder


def test_kpis_migration_lift_and_report_materialize_with_passing_checks(measured):
    world, _, result, folder = measured
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {COVERS_SEGMENTS_CHECK: True, FLOWS_CONSERVE_CHECK: True, INTERVALS_CHECK: True}
    for snapshot in SNAPSHOTS[2:]:
        assert (folder / "reports" / snapshot.isoformat() / "report.html").exists()
    with world.connect(read_only=True) as conn:
        lift = conn.execute(f"SELECT * FROM {measurement.LIFT_SCHEMA.table}").df()
    assert len(lift) and set(lift["snapshot_date"].dt.date) == set(SNAPSHOTS[2:])


def test_measurement_tables_are_exactly_their_declared_schema(measured):
    """One declaration per table: the table written, and the asset's column schema in the UI."""
    world, assets, _, _ = measured
    specs = {key: spec for a in assets for key, spec in a.specs_by_key.items()}
    with world.connect(read_only=True) as conn:
        for schema in measurement.TABLE_SCHEMAS:
            assert list(column_types(conn, schema.table).items()) == list(schema.sql_columns.items())
            spec = specs[key_of(schema.table)]
            assert spec.description == schema.description
            shown = spec.metadata["dagster/column_schema"].columns
            assert [(c.name, c.type, c.description, "pii" in c.tags) for c in shown] == [
                (c.name, c.sql_type, c.description, c.pii) for c in schema.columns
            ]


def test_build_defs_takes_the_platform_config():
    defs = definitions.build_defs(load_platform_config())
    keys = {key for a in defs.assets for key in a.keys}
    assert keys == {*(key_of(s.table) for s in measurement.TABLE_SCHEMAS), REPORT_KEY}
    assert not hasattr(definitions, "defs")
    (lift,) = [a for a in defs.assets if LIFT_KEY in a.keys]
    assert set(lift.required_resource_keys) - {"io_manager"} == {"duckdb"}  # no activation resource
