from datetime import date

import dagster as dg

from segmentation_platform import settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=settings.PARTITIONS_START.isoformat())
# Weekly snapshots end on a Monday 00:00: a snapshot covers everything before its end.
weekly_snapshots = dg.WeeklyPartitionsDefinition(
    start_date=settings.PARTITIONS_START.isoformat(), day_offset=1
)


def snapshot_dates(context: dg.AssetExecutionContext) -> list[date]:
    """The snapshot of a weekly partition is its window's end date (as of 00:00 that day)."""
    return [weekly_snapshots.time_window_for_partition_key(key).end.date() for key in context.partition_keys]


# Dagster's documented run tags for a single run over a partition range (what a single-run
# backfill sets); the demo and tests launch ranged runs with them.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_range_tags(first_key: str, last_key: str) -> dict[str, str]:
    return {PARTITION_RANGE_START_TAG: first_key, PARTITION_RANGE_END_TAG: last_key}
