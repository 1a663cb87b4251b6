"""Behavioural clusters: scaled features, k chosen by silhouette, cluster ids kept stable across snapshots.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.clustering._kmeans import (
    ASSIGNMENT_COLUMNS,
    LOGIC_VERSION,
    MODEL_NAME,
    PROFILE_COLUMNS,
    ClusterFeature,
    ClusteringConfig,
    ClusteringResult,
    centroids_from_profiles,
    fit_clusters,
    load_clustering_config,
)

__all__ = [
    "ASSIGNMENT_COLUMNS",
    "ClusterFeature",
    "ClusteringConfig",
    "ClusteringResult",
    "LOGIC_VERSION",
    "MODEL_NAME",
    "PROFILE_COLUMNS",
    "centroids_from_profiles",
    "fit_clusters",
    "load_clustering_config",
]
