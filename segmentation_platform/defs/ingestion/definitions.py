"""Group `ingestion`: one multi-asset per landing source (daily partitions)."""

import dagster as dg

from segmentation_platform.defs._lib.config import PlatformConfig
from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.ingestion.assets import build_ingestion_assets


def build_defs(config: PlatformConfig) -> dg.Definitions:
    """Ingestion is configured by the source contracts (`contracts.py`), not by a governance file."""
    return group_definitions(build_ingestion_assets())
