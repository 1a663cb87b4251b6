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
