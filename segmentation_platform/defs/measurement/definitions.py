"""Group `measurement`: KPIs, migration, lift and the HTML report (weekly snapshots)."""

from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.measurement.assets import measurement_assets

defs = group_definitions(measurement_assets)
