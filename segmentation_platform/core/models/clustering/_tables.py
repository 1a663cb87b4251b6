"""The two clustering tables, declared once: the writer, the asset's column schema and the docs read these."""

from segmentation_platform.core.warehouse import TableSchema, columns, tables

BEHAVIOUR_CLUSTERS_SCHEMA = TableSchema(
    table=tables.BEHAVIOUR_CLUSTERS,
    grain="customer x snapshot",
    partition_column="snapshot_date",
    columns=columns(
        ("customer_key", "VARCHAR", "Customer key (buyers only)"),
        ("snapshot_date", "DATE", "Snapshot clustered"),
        ("cluster_id", "INTEGER", "Behavioural cluster; the same id means the same cluster across snapshots"),
        ("cluster_label", "VARCHAR", "Generated from the cluster's most distinguishing features"),
        ("distance_to_centroid", "DOUBLE", "Distance to the cluster centre in standard deviations"),
    ),
)

BEHAVIOUR_CLUSTER_PROFILES_SCHEMA = TableSchema(
    table=tables.BEHAVIOUR_CLUSTER_PROFILES,
    grain="cluster x snapshot",
    partition_column="snapshot_date",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot clustered"),
        ("cluster_id", "INTEGER", "Stable cluster id"),
        ("cluster_label", "VARCHAR", "Generated label"),
        ("customers", "BIGINT", "Buyers in the cluster"),
        ("share", "DOUBLE", "Share of the snapshot's buyers"),
        ("matched_previous", "BOOLEAN", "Continues a cluster of the previous snapshot (same id)"),
        ("centroid_shift", "DOUBLE", "Distance moved since the previous snapshot, in standard deviations"),
        (
            "top_features",
            "VARCHAR",
            "JSON: the features setting the cluster apart (z-score of means vs the base)",
        ),
        ("feature_means", "VARCHAR", "JSON: mean of each clustering feature, in its own units"),
        ("feature_z_scores", "VARCHAR", "JSON: z-score of each feature's mean against the base"),
        ("centroid", "VARCHAR", "JSON: centroid in model units (log1p where configured), for id matching"),
        ("k", "INTEGER", "Number of clusters chosen by silhouette"),
        ("method", "VARCHAR", "kmeans or agglomerative"),
        ("silhouette", "DOUBLE", "Silhouette of the chosen k on a sample"),
    ),
)

TABLE_SCHEMAS = (BEHAVIOUR_CLUSTERS_SCHEMA, BEHAVIOUR_CLUSTER_PROFILES_SCHEMA)
