"""Group `segments`: the versioned scheme's assignments, profiles and changelog."""

import dagster as dg

from segmentation_platform.defs._lib.config import PlatformConfig
from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.segments.assets import build_segment_assets


def build_defs(config: PlatformConfig) -> dg.Definitions:
    return group_definitions(build_segment_assets(config.scheme))
