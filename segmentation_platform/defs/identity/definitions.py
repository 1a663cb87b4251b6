"""Group `identity`: one stable customer key per person (cumulative)."""

import dagster as dg

from segmentation_platform.defs._lib.config import PlatformConfig
from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.identity.assets import build_identity_assets


def build_defs(config: PlatformConfig) -> dg.Definitions:
    return group_definitions(build_identity_assets(config.identity))
