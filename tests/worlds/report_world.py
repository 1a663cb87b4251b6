"""A fully measured fixture warehouse: the world, holdouts, exports and every measurement table."""

from pathlib import Path

from segmentation_platform.core import activation, measurement, warehouse
from segmentation_platform.core.activation import load_activation_config
from tests.worlds.activation_world import SNAPSHOTS, World, build_world, write_config


def build_measured_world(folder: Path) -> World:
    world = build_world(folder / "warehouse.duckdb", customers=500)
    config = load_activation_config(write_config(folder))
    with world.connect() as conn:
        for snapshot in SNAPSHOTS:
            activation.write_holdouts(conn, snapshot, config)
            results, _ = activation.run_exports(conn, snapshot, config, folder / "exports")
            tables = {
                activation.EXPORTS_TABLE: (
                    activation.export_log_frame(results),
                    activation.EXPORTS_SCHEMA.sql_columns,
                ),
                measurement.SEGMENT_KPIS_SCHEMA.table: (
                    measurement.segment_kpis(conn, snapshot),
                    measurement.SEGMENT_KPIS_SCHEMA.sql_columns,
                ),
                measurement.CHANNEL_KPIS_SCHEMA.table: (
                    measurement.channel_kpis(conn, snapshot),
                    measurement.CHANNEL_KPIS_SCHEMA.sql_columns,
                ),
                measurement.MIGRATION_SCHEMA.table: (
                    measurement.migration_matrix(conn, snapshot),
                    measurement.MIGRATION_SCHEMA.sql_columns,
                ),
                measurement.LIFT_SCHEMA.table: (
                    measurement.lift(conn, snapshot, config.experiments),
                    measurement.LIFT_SCHEMA.sql_columns,
                ),
            }
            for table, (frame, columns) in tables.items():
                warehouse.replace_partitions(conn, table, frame, "snapshot_date", [snapshot], columns=columns)
    return world
