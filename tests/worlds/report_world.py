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
                    activation.EXPORT_LOG_COLUMNS,
                ),
                "measurement.segment_kpis": (
                    measurement.segment_kpis(conn, snapshot),
                    measurement.SEGMENT_KPI_COLUMNS,
                ),
                "measurement.channel_kpis": (
                    measurement.channel_kpis(conn, snapshot),
                    measurement.CHANNEL_KPI_COLUMNS,
                ),
                "measurement.migration": (
                    measurement.migration_matrix(conn, snapshot),
                    measurement.MIGRATION_COLUMNS,
                ),
                "measurement.lift": (
                    measurement.lift(conn, snapshot, config.experiments),
                    measurement.LIFT_COLUMNS,
                ),
            }
            for table, (frame, columns) in tables.items():
                warehouse.replace_partitions(conn, table, frame, "snapshot_date", [snapshot], columns=columns)
    return world
