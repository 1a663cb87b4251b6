"""Jobs in pipeline order; schedules, sensors and the demo run these."""

import dagster as dg

from segmentation_platform.defs.partitions import daily_partitions

daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion",
    selection=dg.AssetSelection.groups("ingestion"),
    partitions_def=daily_partitions,
    description="Load one day (or a range, in one run) of landing files into raw.* and quarantine.*",
)

PIPELINE_JOBS = [daily_ingestion_job]
