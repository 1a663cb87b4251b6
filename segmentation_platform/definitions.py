"""The platform's Definitions: every group's own `definitions.py`, merged; nothing else."""

import dagster as dg

from segmentation_platform.defs._lib.automation import automation_definitions
from segmentation_platform.defs._lib.config import PlatformConfig, platform_config_from_settings
from segmentation_platform.defs._lib.resources import resources_for
from segmentation_platform.defs.activation import definitions as activation
from segmentation_platform.defs.features import definitions as features
from segmentation_platform.defs.identity import definitions as identity
from segmentation_platform.defs.ingestion import definitions as ingestion
from segmentation_platform.defs.measurement import definitions as measurement
from segmentation_platform.defs.models import definitions as models
from segmentation_platform.defs.segments import definitions as segments

# Each group module's `build_defs(config)` makes its Definitions from the config it is given.
GROUPS = [ingestion, identity, features, models, segments, activation, measurement]


def build_definitions(config: PlatformConfig, resources: dict) -> dg.Definitions:
    assets = dg.Definitions.merge(*(group.build_defs(config) for group in GROUPS))
    return dg.Definitions.merge(
        assets, automation_definitions(list(assets.assets)), dg.Definitions(resources=resources)
    )


defs = build_definitions(platform_config_from_settings(), resources_for())
