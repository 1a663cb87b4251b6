"""The one Definitions object of the platform."""

import os
from pathlib import Path

import dagster as dg

from segmentation_platform.defs.activation import activation_assets
from segmentation_platform.defs.automation import (
    build_schedules,
    failed_run_sensor,
    landing_file_sensor,
)
from segmentation_platform.defs.clv import clv_assets
from segmentation_platform.defs.features import feature_assets
from segmentation_platform.defs.identity import identity_assets
from segmentation_platform.defs.ingestion import ingestion_assets
from segmentation_platform.defs.jobs import build_jobs
from segmentation_platform.defs.measurement import measurement_assets
from segmentation_platform.defs.metadata import with_column_lineage
from segmentation_platform.defs.resources import resources_for
from segmentation_platform.defs.segments import SEGMENT_STAGE_ASSETS

ALL_ASSETS = [
    *ingestion_assets,
    *identity_assets,
    *feature_assets,
    *clv_assets,
    *SEGMENT_STAGE_ASSETS,
    *activation_assets,
    *measurement_assets,
]
JOBS = build_jobs(ALL_ASSETS)


def _with_code_links(assets: list) -> list:
    linked = dg.with_source_code_references(assets)
    # Point the UI's source links at a hosted repository when one is configured.
    if git_url := os.environ.get("SEGMENTATION_GIT_URL"):
        linked = dg.link_code_references_to_git(
            linked,
            git_url=git_url,
            git_branch=os.environ.get("SEGMENTATION_GIT_BRANCH", "main"),
            file_path_mapping=dg.AnchorBasedFilePathMapping(
                local_file_anchor=Path(__file__).resolve().parent.parent, file_anchor_path_in_repository=""
            ),
        )
    return linked


def build_definitions(resources: dict) -> dg.Definitions:
    return dg.Definitions(
        assets=_with_code_links(with_column_lineage(ALL_ASSETS)),
        jobs=JOBS,
        schedules=build_schedules(JOBS),
        sensors=[landing_file_sensor, failed_run_sensor],
        resources=resources,
        # Steps run one after another in the run's own process: every step writes the one
        # DuckDB file (pool "duckdb", one slot), so per-step subprocesses would only add
        # start-up time (measured: a 26-week backfill took twice as long multiprocess).
        executor=dg.in_process_executor,
    )


defs = build_definitions(resources_for())
