"""Generate a small data set and materialize every asset in-process, job by job."""

import os
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from segmentation_platform.defs._lib.config import platform_config_from_settings
from segmentation_platform.defs._lib.jobs import PIPELINE_JOB_NAMES
from segmentation_platform.defs._lib.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from segmentation_platform.defs._lib.resources import resources_for

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def partition_keys_within(
    partitions_def: dg.PartitionsDefinition | None, start: date, end: date
) -> list[str]:
    """Keys whose whole time window lies inside [start, end] (days inclusive)."""
    if partitions_def is None:
        return []
    last = datetime.combine(end + timedelta(days=1), datetime.min.time())
    first = datetime.combine(start, datetime.min.time())
    keys = []
    for key in partitions_def.get_partition_keys(current_time=last + timedelta(days=1)):
        window = partitions_def.time_window_for_partition_key(key)
        if window.start.replace(tzinfo=None) >= first and window.end.replace(tzinfo=None) <= last:
            keys.append(key)
    return keys


def run_job(
    defs: dg.Definitions, job_name: str, start: date, end: date, instance: dg.DagsterInstance
) -> tuple[dg.ExecuteInProcessResult | None, str]:
    """One in-process run of a job over every partition inside [start, end] (single run)."""
    job = defs.resolve_job_def(job_name)
    keys = partition_keys_within(job.partitions_def, start, end)
    if job.partitions_def is not None and not keys:
        return None, f"no complete partition in {start} .. {end}"
    tags = {PARTITION_RANGE_START_TAG: keys[0], PARTITION_RANGE_END_TAG: keys[-1]} if keys else {}
    label = f"{len(keys)} partitions {keys[0]} .. {keys[-1]}" if keys else "unpartitioned"
    return job.execute_in_process(
        instance=instance, tags=tags, run_config=QUIET_LOGS, raise_on_error=False
    ), label


def run_pipeline(
    data_dir: Path, start: date, end: date, echo: Callable[[str], None], instance: dg.DagsterInstance
) -> list[dg.ExecuteInProcessResult]:
    """Run every pipeline job over the partitions the data covers; one run per job, stop at a failure."""
    from segmentation_platform.definitions import build_definitions

    defs = build_definitions(platform_config_from_settings(), resources_for(data_dir))
    results = []
    for job_name in PIPELINE_JOB_NAMES:
        echo(f"- {job_name} ...")
        began = time.perf_counter()
        result, label = run_job(defs, job_name, start, end, instance)
        if result is None:
            echo(f"  skipped: {label}")
            continue
        checks = result.get_asset_check_evaluations()
        failed_checks = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed]
        echo(
            f"  {'ok' if result.success else 'FAILED'} ({label}) in {time.perf_counter() - began:.1f}s: "
            f"{len(result.get_asset_materialization_events())} materializations, "
            f"{len(checks) - len(failed_checks)}/{len(checks)} checks passed"
            + (f" (failed: {', '.join(failed_checks)})" if failed_checks else "")
        )
        results.append(result)
        if not result.success:
            for message in failure_messages(result):
                echo(f"  {message}")
            break
    return results


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """The root cause of every failed step, as a user would want to read it."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause
            messages.append(f"{event.step_key}: {error.message.strip()}")
    return messages


def warehouse_tables(warehouse_path: Path) -> list[tuple[str, int]]:
    with duckdb.connect(str(warehouse_path), read_only=True) as conn:
        tables = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1"
        ).fetchall()
        return [(name, conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]) for (name,) in tables]


def run_demo(
    data_dir: Path, persons: int, start: date, end: date, seed: int, echo: Callable[[str], None]
) -> int:
    from segmentation_platform.synthetic.generator import generate

    echo(f"Generating {persons:,} persons, {start} .. {end} (seed {seed}) into {data_dir}/landing ...")
    echo(str(generate(out_dir=data_dir, persons=persons, start=start, end=end, seed=seed, progress=echo)))
    echo("Materializing every asset in-process:")
    # With DAGSTER_HOME set (as `make demo` does) the runs show up later in `make ui`.
    with (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral() as instance
    ):
        results = run_pipeline(data_dir, start, end, echo, instance)
    succeeded = bool(results) and all(r.success for r in results)
    echo("\nWarehouse tables (" + str(data_dir / "warehouse.duckdb") + "):")
    for name, rows in warehouse_tables(data_dir / "warehouse.duckdb"):
        echo(f"  {name:<40} {rows:>12,} rows")
    echo("\nOpen the UI: `make ui`, then http://127.0.0.1:3000 (asset groups, checks, lineage).")
    return 0 if succeeded else 1
