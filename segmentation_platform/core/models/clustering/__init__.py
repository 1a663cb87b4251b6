"""Behavioural clusters: scaled features, k chosen by silhouette, cluster ids kept stable across snapshots.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.clustering._kmeans import (
    LOGIC_VERSION,
    MODEL_NAME,
    ClusterFeature,
    ClusteringConfig,
    ClusteringResult,
    centroids_from_profiles,
    fit_clusters,
    load_clustering_config,
)
from segmentation_platform.core.models.clustering._tables import (
    BEHAVIOUR_CLUSTER_PROFILES_SCHEMA,
    BEHAVIOUR_CLUSTERS_SCHEMA,
    TABLE_SCHEMAS,
)

__all__ = [
    "ClusterFeature",
    "ClusteringConfig",
    "ClusteringResult",
    "LOGIC_VERSION",
    "MODEL_NAME",
    "BEHAVIOUR_CLUSTERS_SCHEMA",
    "BEHAVIOUR_CLUSTER_PROFILES_SCHEMA",
    "TABLE_SCHEMAS",
    "centroids_from_profiles",
    "fit_clusters",
    "load_clustering_config",
]
