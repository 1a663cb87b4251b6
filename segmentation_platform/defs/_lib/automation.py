"""Schedules and sensors: event-driven ingestion with a daily batch fallback."""

import json

import dagster as dg

from segmentation_platform.core.ingestion import LANDING_FILE
from segmentation_platform.defs._lib.jobs import (
    DAILY_INGESTION,
    IDENTITY_RESOLUTION,
    WEEKLY_SEGMENTATION,
    build_jobs,
)
from segmentation_platform.defs._lib.partitions import daily_partitions
from segmentation_platform.defs._lib.resources import LandingZone


def build_schedules(jobs: list) -> list:
    """All off by default: an operator turns them on in the UI (README, "Operating")."""
    by_name = {job.name: job for job in jobs}
    return [
        dg.build_schedule_from_partitioned_job(
            by_name[DAILY_INGESTION],
            name="daily_ingestion_schedule",
            hour_of_day=2,
            description="Batch fallback: at 02:00 UTC load yesterday's partition of every source.",
        ),
        dg.ScheduleDefinition(
            name="weekly_identity_schedule",
            job=by_name[IDENTITY_RESOLUTION],
            cron_schedule="0 4 * * 1",
            description="Mondays 04:00 UTC: re-resolve identities over everything loaded so far.",
        ),
        dg.build_schedule_from_partitioned_job(
            by_name[WEEKLY_SEGMENTATION],
            name="weekly_segmentation_schedule",
            hour_of_day=6,
            description="Mondays 06:00 UTC: the snapshot of the week that just ended, features through measurement.",
        ),
    ]


def landing_file_versions(landing: LandingZone) -> dict[str, str]:
    """`source/file` -> a version string that changes when the file is rewritten."""
    versions = {}
    if not landing.root.is_dir():
        return versions
    for folder in sorted(p for p in landing.root.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            if LANDING_FILE.match(path.name) and path.is_file():
                stat = path.stat()
                versions[f"{folder.name}/{path.name}"] = f"{stat.st_mtime_ns}-{stat.st_size}"
    return versions


@dg.sensor(
    job_name=DAILY_INGESTION,
    minimum_interval_seconds=30,
    description="Requests ingestion of the day whose landing file arrived or changed, once per file version.",
)
def landing_file_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    seen = json.loads(context.cursor) if context.cursor else {}
    current = landing_file_versions(landing)
    changed_days: dict[str, list[str]] = {}
    for name, version in current.items():
        if seen.get(name) != version:
            day = LANDING_FILE.match(name.split("/", 1)[1]).group(1)
            changed_days.setdefault(day, []).append(f"{name}@{version}")
    valid = set(daily_partitions.get_partition_keys())
    for day, files in sorted(changed_days.items()):
        if day not in valid:
            context.log.warning(
                f"landing files for {day} are outside the daily partitions: {', '.join(files)}"
            )
            continue
        yield dg.RunRequest(
            run_key=f"{day}:{'|'.join(sorted(files))}", partition_key=day, tags={"trigger": "landing_file"}
        )
    context.update_cursor(json.dumps(current, sort_keys=True))


@dg.run_failure_sensor(description="Logs every failed run with the assets it left stale, for alert routing.")
def failed_run_sensor(context: dg.RunFailureSensorContext):
    selection = context.dagster_run.asset_selection or []
    assets = ", ".join(key.to_user_string() for key in selection) or "(job steps)"
    context.log.error(
        f"run {context.dagster_run.run_id} of {context.dagster_run.job_name} failed "
        f"(partition {context.dagster_run.tags.get('dagster/partition', '-')}); stale: {assets}; "
        f"error: {context.failure_event.message}"
    )


def automation_definitions(assets: list) -> dg.Definitions:
    """Jobs over every group's assets, their schedules, the sensors and the executor."""
    jobs = build_jobs(assets)
    return dg.Definitions(
        jobs=jobs,
        schedules=build_schedules(jobs),
        sensors=[landing_file_sensor, failed_run_sensor],
        # Steps run one after another in the run's own process: every step writes the one
        # DuckDB file (pool "duckdb", one slot), so per-step subprocesses would only add
        # start-up time (measured: a 26-week backfill took twice as long multiprocess).
        executor=dg.in_process_executor,
    )
