from pathlib import Path

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from segmentation_platform.defs._lib.config import load_platform_config
from segmentation_platform.defs._lib.keys import EXPORTS_KEY, HOLDOUTS_KEY, REPORT_KEY
from segmentation_platform.defs._lib.keys import SEGMENT_ASSIGNMENTS_KEY as ASSIGNMENTS_KEY
from segmentation_platform.defs._lib.partitions import weekly_snapshots
from segmentation_platform.defs.activation import assets as activation_defs
from segmentation_platform.defs.activation.assets import (
    ActivationSettings,
    OutputFolders,
    activation_resources,
    build_activation_assets,
)
from segmentation_platform.defs.measurement.assets import build_measurement_assets
from tests.worlds.activation_world import SNAPSHOTS, build_world, write_config

activation_assets = build_activation_assets(load_platform_config().activation)
measurement_assets = build_measurement_assets(load_platform_config().activation)

# Weekly partitions are keyed by their Monday start; the snapshot is the window end.
RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2025-02-10",
    "dagster/asset_partition_range_end": "2025-02-24",
}


@pytest.fixture
def setup(tmp_path):
    world = build_world(tmp_path / "warehouse.duckdb")
    resources = {
        "duckdb": DuckDBResource(database=str(world.path)),
        "output_folders": OutputFolders(
            exports_dir=str(tmp_path / "exports"), reports_dir=str(tmp_path / "reports")
        ),
        "activation_config": ActivationSettings(destinations_config=str(write_config(tmp_path))),
    }
    return world, resources, tmp_path


def test_partitions_map_to_snapshot_dates():
    assert activation_defs.snapshot_of("2025-01-27") == SNAPSHOTS[0]
    assert activation_defs.snapshot_of("2025-02-24") == SNAPSHOTS[-1]


def test_single_run_over_three_snapshots_materializes_everything(setup):
    world, resources, folder = setup
    result = dg.materialize(
        [*activation_assets, *measurement_assets],
        resources=resources,
        tags=RANGE_TAGS,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()
    }
    assert checks and all(checks.values()), checks
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {
        "activation/holdouts",
        "activation/exports",
        "measurement/segment_kpis",
        "measurement/channel_kpis",
        "measurement/migration",
        "measurement/lift",
        "measurement/report",
    }
    for snapshot in SNAPSHOTS[2:]:
        assert (folder / "reports" / snapshot.isoformat() / "report.html").exists()
    report_event = next(e for e in result.get_asset_materialization_events() if e.asset_key == REPORT_KEY)
    metadata = report_event.materialization.metadata
    assert metadata["report"].value.endswith(f"{SNAPSHOTS[-1]}/report.html")
    assert metadata["summary"].value.startswith("| segment |")
    with world.connect(read_only=True) as conn:
        log = conn.execute("SELECT snapshot_date, destination, status FROM activation.exports").df()
        assert len(log) == 3 * 5 and set(log["status"]) == {"success"}
        for table in ("segment_kpis", "channel_kpis", "migration", "lift"):
            snapshots = conn.execute(f"SELECT DISTINCT snapshot_date FROM measurement.{table}").df()
            assert len(snapshots) == 3, table

    # Re-materializing the newest snapshot (unchanged) and an older one (skipped: destinations
    # hold a newer one) re-sends nothing and leaves the log and the files exactly as they were.
    log_query = "SELECT * FROM activation.exports ORDER BY snapshot_date, destination"
    with world.connect(read_only=True) as conn:
        before = conn.execute(log_query).fetchall()
    files_before = sorted((p.relative_to(folder), p.read_bytes()) for p in (folder / "exports").rglob("*.*"))
    for partition_key, status in (("2025-02-24", "unchanged"), ("2025-02-10", "skipped")):
        again = dg.materialize(activation_assets, resources=resources, partition_key=partition_key)
        assert again.success
        event = next(e for e in again.get_asset_materialization_events() if e.asset_key == EXPORTS_KEY)
        table = event.materialization.metadata["exports"].value
        assert table.count(f"| {status} |") == 5, table
    with world.connect(read_only=True) as conn:
        assert conn.execute(log_query).fetchall() == before
    assert (
        sorted((p.relative_to(folder), p.read_bytes()) for p in (folder / "exports").rglob("*.*"))
        == files_before
    )


def test_exports_refuse_when_the_latest_segment_check_failed(setup):
    world, resources, _ = setup

    @dg.asset(
        key=ASSIGNMENTS_KEY,
        partitions_def=weekly_snapshots,
        check_specs=[dg.AssetCheckSpec("every_customer_once", asset=ASSIGNMENTS_KEY)],
    )
    def assignments():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="every_customer_once", passed=False)

    instance = dg.DagsterInstance.ephemeral()
    assets = [assignments, *activation_assets]
    first = dg.materialize(
        assets,
        selection=[ASSIGNMENTS_KEY],
        resources=resources,
        instance=instance,
        partition_key="2025-02-24",
    )
    assert first.success  # the failing check is not blocking here: the exports guard has to catch it
    refused = dg.materialize(
        assets,
        selection=[HOLDOUTS_KEY, EXPORTS_KEY],
        resources=resources,
        instance=instance,
        partition_key="2025-02-24",
        raise_on_error=False,
    )
    assert not refused.success
    failure = next(e for e in refused.all_events if e.is_step_failure)
    assert "Refusing to export" in failure.step_failure_data.user_failure_data.description
    assert "every_customer_once" in failure.step_failure_data.user_failure_data.description
    assert not (Path(resources["output_folders"].exports_dir)).exists()

    @dg.asset(
        key=ASSIGNMENTS_KEY,
        partitions_def=weekly_snapshots,
        check_specs=[dg.AssetCheckSpec("every_customer_once", asset=ASSIGNMENTS_KEY)],
    )
    def fixed_assignments():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="every_customer_once", passed=True)

    fixed = [fixed_assignments, *activation_assets]
    assert dg.materialize(
        fixed, selection=[ASSIGNMENTS_KEY], resources=resources, instance=instance, partition_key="2025-02-24"
    ).success
    assert dg.materialize(
        fixed,
        selection=[HOLDOUTS_KEY, EXPORTS_KEY],
        resources=resources,
        instance=instance,
        partition_key="2025-02-24",
    ).success


def test_a_failing_destination_fails_the_run_but_keeps_the_others(setup, tmp_path):
    world, resources, _ = setup
    config = write_config(tmp_path, webhook_url="http://127.0.0.1:9/unreachable")
    config.write_text(config.read_text().replace("max_attempts: 3", "max_attempts: 1"))
    resources = resources | {"activation_config": ActivationSettings(destinations_config=str(config))}
    result = dg.materialize(
        activation_assets, resources=resources, partition_key="2025-02-24", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "hook 2025-03-03" in failure.step_failure_data.user_failure_data.description
    with world.connect(read_only=True) as conn:
        statuses = dict(conn.execute("SELECT destination, status FROM activation.exports").fetchall())
    assert statuses.pop("hook") == "failed" and set(statuses.values()) == {"success"}


def test_asset_metadata_and_resources():
    for assets_def in [*activation_assets, *measurement_assets]:
        for key in assets_def.keys:
            spec = assets_def.specs_by_key[key]
            assert spec.description and spec.owners and spec.kinds and spec.code_version, key
            assert spec.group_name in ("activation", "measurement")
            if "dagster/table_name" in spec.metadata:
                assert spec.metadata["dagster/column_schema"].columns
    resources = activation_resources(Path("data"))
    assert resources["output_folders"].exports_dir == "data/exports"
    assert resources["output_folders"].reports_dir == "data/reports"
    assert resources["activation_config"].load().path.name == "destinations.yaml"
