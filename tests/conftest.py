from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from segmentation_platform.definitions import build_definitions
from segmentation_platform.defs.resources import resources_for
from segmentation_platform.demo import failure_messages, run_job
from segmentation_platform.synthetic.generator import generate

SMALL_START, SMALL_END = date(2025, 1, 1), date(2025, 1, 28)


class Platform:
    """A data folder with generated landing files and the definitions that read it."""

    def __init__(self, data_dir: Path, start: date, end: date):
        self.data_dir, self.start, self.end = data_dir, start, end
        self.defs = build_definitions(resources_for(data_dir))
        self.instance = dg.DagsterInstance.ephemeral()

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    def run(
        self, job_name: str, start: date | None = None, end: date | None = None, expect_success: bool = True
    ):
        result, label = run_job(self.defs, job_name, start or self.start, end or self.end, self.instance)
        assert result is not None, label
        if expect_success:
            assert result.success, failure_messages(result)
        return result


@pytest.fixture(scope="session")
def small_platform(tmp_path_factory) -> Platform:
    """300 persons over four weeks with 5% broken rows, ingested once for the session."""
    data_dir = tmp_path_factory.mktemp("small")
    generate(data_dir, persons=300, start=SMALL_START, end=SMALL_END, seed=11, broken_share=0.05)
    platform = Platform(data_dir, SMALL_START, SMALL_END)
    platform.run("daily_ingestion")
    return platform
