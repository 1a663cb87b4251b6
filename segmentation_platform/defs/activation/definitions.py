"""Group `activation`: holdouts and consent-audited exports (weekly snapshots)."""

from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.activation.assets import activation_assets

defs = group_definitions(activation_assets)
