"""Group `segments`: the versioned scheme's assignments, profiles and changelog."""

from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.segments.assets import segment_assets

defs = group_definitions(segment_assets)
