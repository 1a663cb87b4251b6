import dagster as dg

from segmentation_platform import settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=settings.PARTITIONS_START.isoformat())
# Weekly snapshots end on a Monday 00:00: a snapshot covers everything before its end.
weekly_snapshots = dg.WeeklyPartitionsDefinition(
    start_date=settings.PARTITIONS_START.isoformat(), day_offset=1
)
