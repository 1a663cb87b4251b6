"""Group `models`: RFM, CLV, churn propensity and behavioural clusters (weekly snapshots)."""

from segmentation_platform.defs._lib.definitions import group_definitions
from segmentation_platform.defs.models.churn import churn_assets
from segmentation_platform.defs.models.clusters import cluster_assets
from segmentation_platform.defs.models.clv import clv_assets
from segmentation_platform.defs.models.rfm import rfm_assets

model_assets = [*rfm_assets, *clv_assets, *churn_assets, *cluster_assets]
defs = group_definitions(model_assets)
