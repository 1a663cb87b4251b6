import pytest

from tests.worlds.pipeline_world import PipelineRun, build_pipeline_world


@pytest.fixture(scope="session")
def pipeline_world(tmp_path_factory) -> PipelineRun:
    """The shared 26-week pipeline run (tests/worlds/pipeline_world.py), built once per session."""
    return build_pipeline_world(tmp_path_factory.mktemp("pipeline"))
