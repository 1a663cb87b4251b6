"""One generated shop run through the whole pipeline once per test session.

Shared by the full-pipeline tests (every stage writes rows, re-runs change nothing) and the
weekly backfill test, so the suite pays for ingestion, identity resolution and 26 weekly
snapshots once. Tests that re-run jobs on it must leave every table as they found it, which
is exactly what they assert.
"""

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb

from segmentation_platform.core.warehouse import table_checksum
from segmentation_platform.defs._lib.partitions import weekly_snapshots
from segmentation_platform.demo import partition_keys_within
from segmentation_platform.synthetic.generator import generate
from tests.conftest import Platform

# Seven months: 26 complete weekly snapshots (2025-01-06 .. 2025-07-07), enough history for
# CLTV fits and for the churn labels of later snapshots.
PERSONS, START, END = 800, date(2025, 1, 1), date(2025, 7, 6)
WEEKLY_KEYS = partition_keys_within(weekly_snapshots, START, END)
SNAPSHOT_DATES = [weekly_snapshots.time_window_for_partition_key(k).end.date() for k in WEEKLY_KEYS]

# Columns that record when something ran, not what it computed.
VOLATILE_COLUMNS = {
    "_loaded_at",
    "assigned_at",
    "fitted_at",
    "recorded_at",
    "started_at",
    "finished_at",
    "changed_at",
    "created_at",
    "flagged_at",
    "export_id",
}


@dataclass
class PipelineRun:
    platform: Platform
    weekly: dg.ExecuteInProcessResult


def build_pipeline_world(data_dir: Path) -> PipelineRun:
    """Generate, ingest, resolve identities and materialize the 26 weekly snapshots."""
    generate(data_dir, persons=PERSONS, start=START, end=END, seed=5)
    platform = Platform(data_dir, START, END)
    platform.run("daily_ingestion")
    platform.run("identity_resolution")
    return PipelineRun(platform, platform.run("weekly_segmentation"))


def tables(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1"
            ).fetchall()
        ]


def checksums(warehouse: Path) -> dict[str, str]:
    """Content hash of every table, without run-time columns (a re-run that sends nothing
    keeps the export log's row of the export that did)."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return {name: table_checksum(conn, name, exclude=VOLATILE_COLUMNS) for name in tables(warehouse)}
