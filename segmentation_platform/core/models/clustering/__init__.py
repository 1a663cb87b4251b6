"""clustering: public surface."""

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
