"""Behavioural clusters: `models.behaviour_clusters` and `models.behaviour_cluster_profiles`.

Each snapshot is clustered on its own; ids continue the latest earlier snapshot's
clusters (read back from the profiles table), so a single-run backfill processes
snapshots oldest first and every week inherits the ids of the week before.
"""

from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import warehouse
from segmentation_platform.core.models import clustering
from segmentation_platform.core.models.registry import ModelRecord, record_models
from segmentation_platform.core.warehouse import tables
from segmentation_platform.defs._lib.keys import (
    BEHAVIOUR_CLUSTER_PROFILES_KEY,
    BEHAVIOUR_CLUSTERS_KEY,
    CUSTOMER_FEATURES_KEY,
)
from segmentation_platform.defs._lib.metadata import OWNER, markdown_table, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots

CLUSTERS_TABLE = clustering.BEHAVIOUR_CLUSTERS_SCHEMA.table
PROFILES_TABLE = clustering.BEHAVIOUR_CLUSTER_PROFILES_SCHEMA.table
FEATURES_TABLE = tables.CUSTOMER_FEATURES

ONE_CLUSTER_CHECK = "one_cluster_per_buyer"
K_RANGE_CHECK = "cluster_count_in_range"


def previous_clusters(conn, snapshot: date) -> tuple[pd.DataFrame, int | None]:
    """Centroids of the latest earlier snapshot and the first id never used before it."""
    if not warehouse.table_exists(conn, PROFILES_TABLE):
        return pd.DataFrame(), None
    table = warehouse.table_ref(PROFILES_TABLE)
    latest, highest = conn.execute(
        f"SELECT max(snapshot_date), max(cluster_id) FROM {table} WHERE snapshot_date < ?", [snapshot]
    ).fetchone()
    if latest is None:
        return pd.DataFrame(), None
    profiles = conn.execute(
        f"SELECT cluster_id, centroid FROM {table} WHERE snapshot_date = ?", [latest]
    ).df()
    return clustering.centroids_from_profiles(profiles), int(highest) + 1


def clustering_code_version(config: clustering.ClusteringConfig) -> str:
    """Logic version and every setting that changes clusters; `threads` only changes speed."""
    return version_of(clustering.LOGIC_VERSION, config.result_settings())


def build_cluster_assets(config: clustering.ClusteringConfig) -> list:
    """The clustering multi-asset (assignments and profiles, with their checks) for one config."""
    return [_behaviour_clustering_asset(config)]


def _behaviour_clustering_asset(config: clustering.ClusteringConfig) -> dg.AssetsDefinition:
    code_version = clustering_code_version(config)

    @dg.multi_asset(
        name="behaviour_clustering",
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        group_name="models",
        specs=[
            dg.AssetSpec(
                BEHAVIOUR_CLUSTERS_KEY,
                description=(
                    "Behavioural cluster of every buyer at the snapshot: k-means on standardized channel mix, "
                    "category mix, email engagement, basket size and discount use, k in "
                    f"[{config.k_min}, {config.k_max}] by silhouette. Ids are stable: "
                    "each cluster keeps the id of the previous snapshot's cluster it matches (Hungarian "
                    "assignment on centroids)."
                ),
                deps=[CUSTOMER_FEATURES_KEY],
                owners=[OWNER],
                kinds={"duckdb", "scikitlearn", "python"},
                code_version=code_version,
                metadata=schema_metadata(clustering.BEHAVIOUR_CLUSTERS_SCHEMA)
                | {"features": ", ".join(f.column for f in config.features)},
                tags={"layer": "models"},
            ),
            dg.AssetSpec(
                BEHAVIOUR_CLUSTER_PROFILES_KEY,
                description="One row per cluster and snapshot: size, label, distinguishing features, centroid.",
                deps=[CUSTOMER_FEATURES_KEY],
                owners=[OWNER],
                kinds={"duckdb", "python"},
                code_version=code_version,
                metadata=schema_metadata(clustering.BEHAVIOUR_CLUSTER_PROFILES_SCHEMA),
                tags={"layer": "models"},
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                ONE_CLUSTER_CHECK,
                asset=BEHAVIOUR_CLUSTERS_KEY,
                description="Every buyer of the snapshot is in exactly one cluster.",
            ),
            dg.AssetCheckSpec(
                K_RANGE_CHECK,
                asset=BEHAVIOUR_CLUSTERS_KEY,
                description=f"The number of clusters lies in [{config.k_min}, {config.k_max}].",
            ),
        ],
    )
    def behaviour_clustering(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        results: dict[date, clustering.ClusteringResult] = {}
        problems = {}
        columns = ["customer_key", "snapshot_date", *(f.column for f in config.features)]
        if config.frequency_column:
            columns.append(config.frequency_column)
        with duckdb.get_connection() as conn:
            if not warehouse.table_exists(conn, FEATURES_TABLE):
                raise dg.Failure(
                    f"{FEATURES_TABLE} does not exist: materialize features/customer_features first"
                )
            present = set(warehouse.table_columns(conn, FEATURES_TABLE))
            select = ", ".join(warehouse.quote(c) for c in dict.fromkeys(columns) if c in present)
            for snapshot in dates:
                frame = conn.execute(
                    f"SELECT {select} FROM {warehouse.table_ref(FEATURES_TABLE)} WHERE snapshot_date = ?",
                    [snapshot],
                ).df()
                previous, next_id = previous_clusters(conn, snapshot)
                result = clustering.fit_clusters(frame, snapshot, config, previous, next_id)
                results[snapshot] = result
                warehouse.replace_partitions(
                    conn,
                    CLUSTERS_TABLE,
                    result.assignments,
                    "snapshot_date",
                    [snapshot],
                    columns=clustering.BEHAVIOUR_CLUSTERS_SCHEMA.sql_columns,
                )
                warehouse.replace_partitions(
                    conn,
                    PROFILES_TABLE,
                    result.profiles,
                    "snapshot_date",
                    [snapshot],
                    columns=clustering.BEHAVIOUR_CLUSTER_PROFILES_SCHEMA.sql_columns,
                )
                record_models(conn, [_registry_record(result, snapshot, config, code_version)])
                buyers = len(frame)
                if config.frequency_column in frame.columns:
                    buyers = int((frame[config.frequency_column].fillna(0) >= config.min_frequency).sum())
                if len(result.assignments) != buyers or result.assignments["customer_key"].duplicated().any():
                    problems[snapshot.isoformat()] = {"buyers": buyers, "assigned": len(result.assignments)}
                context.log.info(
                    f"clusters as of {snapshot}: k={result.k}, silhouette {result.silhouette:.3f}, "
                    f"kept ids {sorted(result.matched)}, new {result.new_clusters}, retired {result.retired_clusters}"
                )
            total_rows = warehouse.row_count(conn, CLUSTERS_TABLE)
            profile_rows = warehouse.row_count(conn, PROFILES_TABLE)

        latest = results[dates[-1]]
        shown = latest.profiles[["cluster_id", "cluster_label", "customers", "share", "matched_previous"]]
        yield dg.MaterializeResult(
            asset_key=BEHAVIOUR_CLUSTERS_KEY,
            metadata={
                "dagster/row_count": total_rows,
                "dagster/partition_row_count": sum(len(r.assignments) for r in results.values()),
                "k": latest.k,
                "silhouette": latest.silhouette,
                "elbow_and_silhouette": dg.MetadataValue.md(markdown_table(latest.selection)),
                "clusters": dg.MetadataValue.md(markdown_table(shown)),
                "new_cluster_ids": dg.MetadataValue.json(latest.new_clusters),
                "retired_cluster_ids": dg.MetadataValue.json(latest.retired_clusters),
                "features_missing": ", ".join(latest.features_missing) or "none",
            },
        )
        yield dg.MaterializeResult(
            asset_key=BEHAVIOUR_CLUSTER_PROFILES_KEY,
            metadata={
                "dagster/row_count": profile_rows,
                "dagster/partition_row_count": sum(len(r.profiles) for r in results.values()),
            },
        )
        yield dg.AssetCheckResult(
            asset_key=BEHAVIOUR_CLUSTERS_KEY,
            check_name=ONE_CLUSTER_CHECK,
            passed=not problems,
            metadata={"mismatches": dg.MetadataValue.json(problems)},
        )
        out_of_range = {
            d.isoformat(): r.k for d, r in results.items() if not config.k_min <= r.k <= config.k_max
        }
        yield dg.AssetCheckResult(
            asset_key=BEHAVIOUR_CLUSTERS_KEY,
            check_name=K_RANGE_CHECK,
            passed=not out_of_range,
            metadata={
                "k_by_snapshot": dg.MetadataValue.json({d.isoformat(): r.k for d, r in results.items()})
            },
        )

    return behaviour_clustering


def _registry_record(
    result: clustering.ClusteringResult, snapshot: date, config: clustering.ClusteringConfig, version: str
) -> ModelRecord:
    return ModelRecord(
        model=clustering.MODEL_NAME,
        version=version,
        snapshot_date=snapshot,
        fitted_at=datetime.now(UTC).replace(tzinfo=None),
        training_start=snapshot,
        training_end=snapshot,
        n_training_rows=len(result.assignments),
        parameters={
            "method": config.method,
            "k_range": [config.k_min, config.k_max],
            "features": result.features_used,
            "fit_rows": config.fit_rows,
            "seed": config.seed,
            "config_version": config.declared_version,
        },
        metrics={
            "k": result.k,
            "silhouette": result.silhouette,
            "selection": result.selection.to_dict(orient="records"),
            "kept_ids": sorted(result.matched),
            "new_ids": result.new_clusters,
            "retired_ids": result.retired_clusters,
        },
        is_champion=True,
    )
