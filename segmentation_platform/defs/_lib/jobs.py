"""Jobs in pipeline order; schedules, sensors, the demo and the benchmark run these.

A job holds assets of one partitioning, so each stage is picked by its partitions
definition: daily ingestion, then the unpartitioned identity graph, then every weekly
snapshot asset (features through activation and measurement).
"""

import dagster as dg

from segmentation_platform.defs._lib.partitions import daily_partitions, weekly_snapshots

DAILY_INGESTION = "daily_ingestion"
IDENTITY_RESOLUTION = "identity_resolution"
WEEKLY_SEGMENTATION = "weekly_segmentation"
PIPELINE_JOB_NAMES = [DAILY_INGESTION, IDENTITY_RESOLUTION, WEEKLY_SEGMENTATION]


def _keys(assets: list, partitions_def, groups: set[str] | None = None) -> list[dg.AssetKey]:
    return [
        key
        for asset in assets
        if asset.partitions_def == partitions_def
        for key in asset.keys
        if groups is None or asset.group_names_by_key[key] in groups
    ]


def build_jobs(assets: list) -> list:
    return [
        dg.define_asset_job(
            DAILY_INGESTION,
            selection=dg.AssetSelection.assets(*_keys(assets, daily_partitions)),
            partitions_def=daily_partitions,
            description="Load one day (or a range, in one run) of landing files into raw.* and quarantine.*",
        ),
        dg.define_asset_job(
            IDENTITY_RESOLUTION,
            selection=dg.AssetSelection.assets(*_keys(assets, None, {"identity"})),
            description="Resolve every source record to one stable customer key (cumulative).",
        ),
        dg.define_asset_job(
            WEEKLY_SEGMENTATION,
            # Unpartitioned governance assets (the segment scheme's changelog) refresh with it.
            selection=dg.AssetSelection.assets(
                *_keys(assets, weekly_snapshots), *_keys(assets, None, {"segments", "models", "measurement"})
            ),
            partitions_def=weekly_snapshots,
            description="Snapshot features, models, segments, activation and measurement as of each week's end.",
        ),
    ]
