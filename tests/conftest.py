from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from segmentation_platform.definitions import build_definitions
from segmentation_platform.defs._lib.config import platform_config_from_settings
from segmentation_platform.defs._lib.resources import resources_for
from segmentation_platform.demo import failure_messages, run_job
from segmentation_platform.synthetic.generator import generate

SMALL_START, SMALL_END = date(2025, 1, 1), date(2025, 1, 28)
# `make test` runs two xdist workers, each taking one module (or shared world) at a time.
# Modules sharing an expensive session fixture go to one worker, and the longest go first,
# so the e2e instance (mostly waiting on daemon ticks) overlaps everything else.
SHARED_WORLDS = {
    "tests/e2e/test_instance_backfill.py": "dagster_dev",
    "tests/e2e/test_ui_browser.py": "dagster_dev",
    "tests/defs/test_pipeline.py": "pipeline_world",
    "tests/defs/test_weekly_backfill.py": "pipeline_world",
}
LONGEST_FIRST = ["dagster_dev", "pipeline_world", "tests/e2e/test_failure_drills.py"]


def _world(nodeid: str) -> str:
    module = nodeid.split("::")[0]
    return SHARED_WORLDS.get(module, module)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_world(item.nodeid), len(rank)))  # stable: file order within


def pytest_xdist_make_scheduler(config, log):
    """Work units are worlds. (`--dist loadgroup` would do with xdist_group marks, but xdist
    3.8 loses the marks' groups on pytest 9.2: pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class WorldScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _world(nodeid)

    return WorldScheduling(config, log)


class Platform:
    """A data folder with generated landing files and the definitions that read it."""

    def __init__(self, data_dir: Path, start: date, end: date):
        self.data_dir, self.start, self.end = data_dir, start, end
        self.defs = build_definitions(platform_config_from_settings(), resources_for(data_dir))
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
