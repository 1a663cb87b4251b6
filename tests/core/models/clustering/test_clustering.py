import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation_platform.core.config import ConfigError
from segmentation_platform.core.models.clustering import (
    ClusterFeature,
    ClusteringConfig,
    centroids_from_profiles,
    fit_clusters,
    load_clustering_config,
)

FEATURES = ("web_revenue_share", "discount_share", "email_open_rate_90d", "monetary_avg")
# Four planted behaviours: web deal seekers, store full-price, engaged big baskets, average.
CENTRES = np.array(
    [
        [0.9, 0.40, 0.2, 40.0],
        [0.1, 0.02, 0.2, 45.0],
        [0.5, 0.05, 0.8, 160.0],
        [0.5, 0.20, 0.5, 80.0],
    ]
)
SPREAD = np.array([0.05, 0.03, 0.05, 6.0])
CONFIG = ClusteringConfig(
    features=(
        ClusterFeature("web_revenue_share", high="web-first", low="store-first"),
        ClusterFeature("discount_share", high="deal seekers", low="full-price buyers"),
        ClusterFeature("email_open_rate_90d"),
        ClusterFeature("monetary_avg", log=True),
    ),
    selection_rows=3_000,
    silhouette_rows=2_000,
    fit_rows=10_000,
    agglomerative_rows=2_000,
    n_init=2,
)


def planted(n: int, seed: int, weights=(0.3, 0.3, 0.2, 0.2), prefix: str = "C") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(len(weights), n, p=np.array(weights) / sum(weights))
    values = CENTRES[group] + rng.normal(size=(n, len(FEATURES))) * SPREAD
    frame = pd.DataFrame(values, columns=list(FEATURES))
    frame.insert(0, "customer_key", [f"{prefix}{i:06d}" for i in range(n)])
    frame["frequency"] = rng.integers(1, 10, n)
    frame["group"] = group
    return frame


def test_k_is_chosen_by_silhouette_and_recovers_planted_groups():
    frame = planted(6_000, seed=1)
    result = fit_clusters(frame, "2025-03-03", CONFIG)
    assert result.k == 4
    assert list(result.selection["k"]) == [3, 4, 5, 6, 7]
    assert result.selection["inertia"].is_monotonic_decreasing  # the elbow curve is kept
    assert result.silhouette == result.selection["silhouette"].max()
    merged = frame.merge(result.assignments, on="customer_key")
    assert adjusted_rand_score(merged["group"], merged["cluster_id"]) > 0.95
    assert len(result.assignments) == len(frame) and result.assignments["customer_key"].is_unique
    assert result.profiles["customers"].sum() == len(frame)
    assert result.profiles["share"].sum() == pytest.approx(1.0)


def test_profiles_name_what_sets_each_cluster_apart():
    frame = planted(6_000, seed=2)
    result = fit_clusters(frame, "2025-03-03", CONFIG)
    merged = frame.merge(result.assignments, on="customer_key")
    deal_cluster = merged.loc[merged["group"] == 0, "cluster_id"].mode()[0]
    profile = result.profiles.set_index("cluster_id").loc[deal_cluster]
    z = json.loads(profile["feature_z_scores"])
    assert z["web_revenue_share"] > 1 and z["discount_share"] > 1
    top = [item["feature"] for item in json.loads(profile["top_features"])]
    assert set(top[:2]) == {"web_revenue_share", "discount_share"}
    assert "deal seekers" in profile["cluster_label"] or "web-first" in profile["cluster_label"]
    means = json.loads(profile["feature_means"])
    assert means["monetary_avg"] == pytest.approx(40.0, abs=3)  # reported in raw units, not log


def test_cluster_ids_are_stable_across_snapshots():
    first = fit_clusters(planted(6_000, seed=3), "2025-03-03", CONFIG)
    # Next week: other people, other order, slightly different mix: the same four behaviours.
    later = planted(6_000, seed=4, weights=(0.25, 0.35, 0.2, 0.2), prefix="D")
    later = later.sample(frac=1, random_state=0)
    second = fit_clusters(later, "2025-03-10", CONFIG, centroids_from_profiles(first.profiles))
    assert second.k == 4 and sorted(second.matched) == sorted(first.profiles["cluster_id"])
    assert second.new_clusters == [] and second.retired_clusters == []

    def id_of_group(result, frame):
        merged = frame.merge(result.assignments, on="customer_key")
        return merged.groupby("group")["cluster_id"].agg(lambda s: s.mode()[0]).to_dict()

    assert id_of_group(second, later) == id_of_group(first, planted(6_000, seed=3))
    assert (second.profiles["centroid_shift"] < 0.5).all()
    assert second.profiles["matched_previous"].all()


def test_a_new_behaviour_gets_a_fresh_id_and_a_vanished_one_retires():
    three = dataclasses.replace(CONFIG, k_min=3, k_max=3)
    first = fit_clusters(planted(5_000, seed=5, weights=(0.4, 0.3, 0.3, 0.0)), "2025-03-03", three)
    # Group 2 disappears, group 3 appears: one match lost, one new cluster.
    second = fit_clusters(
        planted(5_000, seed=6, weights=(0.4, 0.3, 0.0, 0.3)),
        "2025-03-10",
        three,
        centroids_from_profiles(first.profiles),
        next_id=10,
    )
    assert len(second.matched) == 2
    assert second.new_clusters == [10]
    assert len(second.retired_clusters) == 1


def test_agglomerative_option_assigns_everyone():
    frame = planted(4_000, seed=7)
    result = fit_clusters(frame, "2025-03-03", dataclasses.replace(CONFIG, method="agglomerative"))
    assert result.k == 4
    merged = frame.merge(result.assignments, on="customer_key")
    assert adjusted_rand_score(merged["group"], merged["cluster_id"]) > 0.9
    assert set(result.profiles["method"]) == {"agglomerative"}


def test_only_buyers_are_clustered_and_missing_features_are_reported():
    frame = planted(3_000, seed=8).drop(columns=["email_open_rate_90d"])
    frame.loc[:99, "frequency"] = 0
    frame.loc[100:199, "discount_share"] = np.nan  # filled with the median, not dropped
    result = fit_clusters(frame, "2025-03-03", CONFIG)
    assert len(result.assignments) == 2_900
    assert result.features_missing == ["email_open_rate_90d"]
    with pytest.raises(ValueError, match="at least two"):
        fit_clusters(frame[["customer_key", "frequency", "monetary_avg"]], "2025-03-03", CONFIG)


def test_default_config_loads_and_errors_name_the_line(tmp_path):
    config = load_clustering_config()
    assert config.k_min == 3 and config.k_max == 7 and len(config.features) >= 4
    path = tmp_path / "clustering.yaml"
    path.write_text("version: 1\nfeatures:\n  - column: a\n  - column: b\n    logg: true\n")
    with pytest.raises(ConfigError) as error:
        load_clustering_config(path)
    assert error.value.line == 5 and "logg" in str(error.value)
    path.write_text("version: 1\nk_min: 5\nk_max: 4\nfeatures: [a, b]\n")
    with pytest.raises(ConfigError, match=r"clustering.yaml:3: k_max"):
        load_clustering_config(path)
