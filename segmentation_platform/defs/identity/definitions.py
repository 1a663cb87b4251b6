"""Group `identity`: one stable customer key per person (cumulative)."""

from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.identity.assets import identity_assets

defs = group_definitions(identity_assets)
