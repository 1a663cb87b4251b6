"""Group `features`: the point-in-time feature store (weekly snapshots)."""

from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.features.assets import feature_assets

defs = group_definitions(feature_assets)
