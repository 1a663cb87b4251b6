"""Group `activation`: holdouts and consent-audited exports (weekly snapshots)."""

import dagster as dg

from segmentation_platform.defs._lib.config import PlatformConfig
from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.activation.assets import build_activation_assets


def build_defs(config: PlatformConfig) -> dg.Definitions:
    return group_definitions(build_activation_assets(config.activation))
