"""Group `models`: RFM, CLV, churn propensity and behavioural clusters (weekly snapshots)."""

import dagster as dg

from segmentation_platform.defs._lib.config import PlatformConfig
from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.models.churn import build_churn_assets
from segmentation_platform.defs.models.clusters import build_cluster_assets
from segmentation_platform.defs.models.clv import build_clv_assets
from segmentation_platform.defs.models.rfm import build_rfm_assets


def build_model_assets(config: PlatformConfig) -> list:
    return [
        *build_rfm_assets(config.rfm),
        *build_clv_assets(config.clv),
        *build_churn_assets(config.churn),
        *build_cluster_assets(config.clustering),
    ]


def build_defs(config: PlatformConfig) -> dg.Definitions:
    return group_definitions(build_model_assets(config))
