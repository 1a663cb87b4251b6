import os

import dagster as dg

from segmentation_platform.definitions import defs
from segmentation_platform.defs._lib.automation import landing_file_sensor
from segmentation_platform.defs._lib.resources import LandingZone

HEADER = "order_id,account_id,ordered_at,amount\n"


def _tick(landing_dir, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"landing": LandingZone(path=str(landing_dir))}
    )
    requests = list(landing_file_sensor(context))
    return requests, context.cursor


def test_sensor_requests_the_arrived_day_once_per_file_version(tmp_path):
    folder = tmp_path / "web_orders"
    folder.mkdir()
    (folder / "2025-02-03.csv").write_text(HEADER + "O1,A1,2025-02-03 10:00:00,5\n")
    (folder / "notes.txt").write_text("not a landing file")
    requests, cursor = _tick(tmp_path)
    assert [r.partition_key for r in requests] == ["2025-02-03"]

    assert _tick(tmp_path, cursor)[0] == []  # nothing new: nothing requested

    (folder / "2025-02-04.csv").write_text(HEADER)
    path = folder / "2025-02-03.csv"
    path.write_text(HEADER + "O1,A1,2025-02-03 10:00:00,5\nO2,A2,2025-02-03 11:00:00,6\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    requests, _ = _tick(tmp_path, cursor)
    assert sorted(r.partition_key for r in requests) == ["2025-02-03", "2025-02-04"]
    assert len({r.run_key for r in requests}) == 2


def test_schedules_and_sensors_are_registered_and_off_by_default():
    schedule = defs.resolve_schedule_def("daily_ingestion_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_sensor_def("landing_file_sensor").job_name == "daily_ingestion"
    assert defs.resolve_sensor_def("failed_run_sensor")
