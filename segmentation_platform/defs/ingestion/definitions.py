"""Group `ingestion`: landing files -> raw.* and quarantine.* (daily partitions)."""

from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.ingestion.assets import ingestion_assets

defs = group_definitions(ingestion_assets)
