"""Group `features`: the point-in-time feature store (weekly snapshots)."""

import dagster as dg

from segmentation_platform.defs._lib.config import PlatformConfig
from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.features.assets import build_feature_assets


def build_defs(config: PlatformConfig) -> dg.Definitions:
    return group_definitions(build_feature_assets(config.features))
