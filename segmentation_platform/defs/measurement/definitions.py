"""Group `measurement`: KPIs, migration, lift and the HTML report (weekly snapshots)."""

import dagster as dg

from segmentation_platform.defs._lib.config import PlatformConfig
from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.measurement.assets import build_measurement_assets


def build_defs(config: PlatformConfig) -> dg.Definitions:
    return group_definitions(build_measurement_assets(config.activation))
