"""Behavioural clusters: how customers buy (channel, categories, engagement, basket).

Standardized features go through k-means (or Ward agglomerative clustering) on a sample;
k is chosen in [k_min, k_max] by silhouette, with the elbow curve kept for review, and
every customer is assigned to the nearest centroid. Cluster ids must mean the same thing
week after week, or segment migration reports are noise: each snapshot's centroids are
matched to the previous snapshot's by Hungarian assignment on centroid distance and
inherit their ids. Each cluster gets a profile (z-scores of its feature means against
the whole base) and a generated label from its most distinguishing features.
"""

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from segmentation_platform.core.config import ConfigError, Section, load_located_yaml
from segmentation_platform.core.config._paths import CONFIG_DIR

CLUSTERING_CONFIG_PATH = CONFIG_DIR / "clustering.yaml"
LOGIC_VERSION = "1"
MODEL_NAME = "behaviour_clusters"


@dataclass(frozen=True)
class ClusterFeature:
    column: str
    log: bool = False
    # Words for cluster labels when the cluster sits well above / below the base.
    high: str | None = None
    low: str | None = None

    def word(self, above: bool) -> str:
        chosen = self.high if above else self.low
        return chosen or f"{'high' if above else 'low'} {self.column}"


@dataclass(frozen=True)
class ClusteringConfig:
    features: tuple[ClusterFeature, ...]
    method: str = "kmeans"
    k_min: int = 3
    k_max: int = 7
    frequency_column: str | None = "frequency"
    min_frequency: float = 1
    selection_rows: int = 40_000
    silhouette_rows: int = 8_000
    fit_rows: int = 150_000
    agglomerative_rows: int = 8_000
    n_init: int = 3
    seed: int = 7
    max_match_distance: float | None = 2.0
    threads: int | None = 1
    declared_version: int = 1

    def result_settings(self) -> tuple:
        """Everything that can change a result, i.e. all but `threads`: what code_version hashes."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "threads")


def load_clustering_config(path: Path | str = CLUSTERING_CONFIG_PATH) -> ClusteringConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read clustering config ({exc.strerror})") from None
    top = Section(load_located_yaml(text, path), path, "")
    top.only(
        ["version", "method", "k_min", "k_max", "features", "population", "sampling", "stability", "threads"],
        required=["version", "features"],
    )
    items = top.data["features"]
    if not isinstance(items, list) or len(items) < 2:
        raise top.error("features", "features must list at least two columns")
    features = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            features.append(ClusterFeature(item))
            continue
        section = Section(item, path, f"features[{index}]", items.line_of(index)).only(
            ["column", "log", "high", "low"], required=["column"]
        )
        features.append(
            ClusterFeature(
                section.text("column"),
                section.flag("log", False),
                section.text("high") if section.has("high") else None,
                section.text("low") if section.has("low") else None,
            )
        )
    columns = [f.column for f in features]
    for index, column in enumerate(columns):
        if column in columns[:index]:
            raise ConfigError(path, items.line_of(index), f"feature {column!r} is listed twice")
    kwargs: dict = {
        "features": tuple(features),
        "declared_version": top.number("version", integer=True, low=1),
        "method": top.choice("method", ["kmeans", "agglomerative"], "kmeans"),
        "k_min": top.number("k_min", 3, integer=True, low=2, high=20),
        "k_max": top.number("k_max", 7, integer=True, low=2, high=20),
        "threads": None
        if top.data.get("threads", 1) is None
        else top.number("threads", 1, low=1, integer=True),
    }
    if kwargs["k_max"] < kwargs["k_min"]:
        raise top.error("k_max", f"k_max ({kwargs['k_max']}) must be at least k_min ({kwargs['k_min']})")
    if top.has("population"):
        section = top.section("population").only(["frequency_column", "min_frequency"])
        kwargs["frequency_column"] = section.data.get("frequency_column") or None
        kwargs["min_frequency"] = section.number("min_frequency", 1, low=0)
    if top.has("sampling"):
        section = top.section("sampling").only(
            ["selection_rows", "silhouette_rows", "fit_rows", "agglomerative_rows", "n_init", "seed"]
        )
        kwargs |= {
            "selection_rows": section.number("selection_rows", 40_000, integer=True, low=100),
            "silhouette_rows": section.number("silhouette_rows", 8_000, integer=True, low=100),
            "fit_rows": section.number("fit_rows", 150_000, integer=True, low=100),
            "agglomerative_rows": section.number(
                "agglomerative_rows", 8_000, integer=True, low=100, high=50_000
            ),
            "n_init": section.number("n_init", 3, integer=True, low=1),
            "seed": section.number("seed", 7, integer=True),
        }
    if top.has("stability"):
        section = top.section("stability").only(["max_match_distance"])
        value = section.data.get("max_match_distance")
        kwargs["max_match_distance"] = (
            None if value is None else section.number("max_match_distance", low=0.0)
        )
    return ClusteringConfig(**kwargs)


@dataclass
class ClusteringResult:
    assignments: pd.DataFrame  # BEHAVIOUR_CLUSTERS_SCHEMA
    profiles: pd.DataFrame  # BEHAVIOUR_CLUSTER_PROFILES_SCHEMA
    selection: pd.DataFrame  # k, inertia, silhouette (the elbow curve and the choice)
    k: int
    silhouette: float
    features_used: list[str]
    features_missing: list[str]
    matched: dict[int, int]  # cluster id -> previous cluster id it continues (same id)
    new_clusters: list[int]
    retired_clusters: list[int]

    def centroids(self) -> pd.DataFrame:
        """cluster_id x feature, in transformed (log1p where configured) units."""
        return centroids_from_profiles(self.profiles)


def centroids_from_profiles(profiles: pd.DataFrame) -> pd.DataFrame:
    """The centroid table a later snapshot matches against, from stored profile rows."""
    if profiles is None or profiles.empty:
        return pd.DataFrame()
    rows = {int(r.cluster_id): json.loads(r.centroid) for r in profiles.itertuples()}
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def _transform(frame: pd.DataFrame, features: list[ClusterFeature]) -> tuple[np.ndarray, np.ndarray]:
    """(transformed, raw): log1p where configured; NaN filled with the median in both.

    Distances use the transformed matrix; profiles report means in raw units people read."""
    raw = np.column_stack([frame[f.column].astype(float).to_numpy() for f in features])
    transformed = raw.copy()
    for j, feature in enumerate(features):
        if feature.log:
            transformed[:, j] = np.log1p(np.maximum(transformed[:, j], 0))
        column = transformed[:, j]
        missing = np.isnan(column)
        if missing.any():
            column[missing] = np.nanmedian(column) if (~missing).any() else 0.0
        raw_column = raw[:, j]
        raw_missing = np.isnan(raw_column)
        if raw_missing.any():
            raw_column[raw_missing] = np.nanmedian(raw_column) if (~raw_missing).any() else 0.0
    return transformed, raw


def fit_clusters(
    features: pd.DataFrame,
    snapshot_date,
    config: ClusteringConfig,
    previous_centroids: pd.DataFrame | None = None,
    next_id: int | None = None,
) -> ClusteringResult:
    """Cluster the buyers of one snapshot; ids continue `previous_centroids` where they match.

    `previous_centroids`: cluster_id x feature in transformed units (`centroids_from_profiles`
    of the previous snapshot); `next_id`: first id never used before (default: one past the
    previous ids), so a retired id is never given to a different cluster later.
    """
    import sklearn.cluster  # noqa: F401  (load OpenMP before limiting it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(config.threads):
        return _fit_clusters(features, snapshot_date, config, previous_centroids, next_id)


def _fit_clusters(features, snapshot_date, config, previous_centroids, next_id) -> ClusteringResult:
    from sklearn.cluster import AgglomerativeClustering, KMeans

    snapshot = pd.Timestamp(snapshot_date).normalize()
    used = [f for f in config.features if f.column in features.columns]
    missing = [f.column for f in config.features if f.column not in features.columns]
    if len(used) < 2:
        raise ValueError(
            f"behavioural clustering needs at least two of its configured features; missing: {', '.join(missing)}"
        )
    population = features
    if config.frequency_column and config.frequency_column in features.columns:
        population = features[features[config.frequency_column].fillna(0) >= config.min_frequency]
    population = population.reset_index(drop=True)
    n = len(population)
    if n < config.k_min * 2:
        raise ValueError(f"only {n} buyers at {snapshot.date()}: too few to form {config.k_min} clusters")
    transformed, raw = _transform(population, used)
    mean, std = transformed.mean(axis=0), transformed.std(axis=0)
    std[std == 0] = 1.0
    z = (transformed - mean) / std
    rng = np.random.default_rng(config.seed)

    def sample(rows: int) -> np.ndarray:
        return np.sort(rng.choice(n, rows, replace=False)) if n > rows else np.arange(n)

    k_values = [k for k in range(config.k_min, config.k_max + 1) if k < n]
    silhouette_rows = sample(config.silhouette_rows)
    selection, fits = [], {}
    if config.method == "kmeans":
        selection_rows = sample(config.selection_rows)
        for k in k_values:
            model = KMeans(k, n_init=config.n_init, random_state=config.seed).fit(z[selection_rows])
            labels = model.predict(z[silhouette_rows])
            selection.append(
                {
                    "k": k,
                    "inertia": float(model.inertia_),
                    "silhouette": _silhouette(z[silhouette_rows], labels),
                }
            )
    else:
        ward_rows = sample(config.agglomerative_rows)
        for k in k_values:
            labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(z[ward_rows])
            centres = np.vstack([z[ward_rows][labels == c].mean(axis=0) for c in range(k)])
            fits[k] = centres
            inertia = float(((z[ward_rows] - centres[labels]) ** 2).sum())
            selection.append({"k": k, "inertia": inertia, "silhouette": _silhouette(z[ward_rows], labels)})
    selection = pd.DataFrame(selection)
    best = selection.sort_values(["silhouette", "k"], ascending=[False, True]).iloc[0]
    k = int(best["k"])

    if config.method == "kmeans":
        final = KMeans(k, n_init=config.n_init, random_state=config.seed).fit(z[sample(config.fit_rows)])
        centres = final.cluster_centers_
        labels = final.predict(z)
    else:
        centres = fits[k]
        labels = _nearest(z, centres)
    distance = np.sqrt(((z - centres[labels]) ** 2).sum(axis=1))
    sizes = np.bincount(labels, minlength=k)

    ids, matched, shifts = _stable_ids(
        centres * std + mean, sizes, [f.column for f in used], mean, std, previous_centroids, next_id, config
    )
    previous_ids = (
        [] if previous_centroids is None or previous_centroids.empty else list(previous_centroids.index)
    )
    cluster_id = ids[labels]

    z_means = np.vstack([np.bincount(labels, weights=z[:, j], minlength=k) for j in range(len(used))]).T
    z_means /= np.maximum(sizes, 1)[:, None]
    raw_means = np.vstack([np.bincount(labels, weights=raw[:, j], minlength=k) for j in range(len(used))]).T
    raw_means /= np.maximum(sizes, 1)[:, None]
    names = [f.column for f in used]
    correlation = np.nan_to_num(np.corrcoef(z[silhouette_rows].T))
    labels_text = _labels(z_means, used, ids, correlation)
    silhouette = float(best["silhouette"])
    profiles = pd.DataFrame(
        [
            {
                "snapshot_date": snapshot,
                "cluster_id": int(ids[c]),
                "cluster_label": labels_text[c],
                "customers": int(sizes[c]),
                "share": float(sizes[c] / n),
                "matched_previous": int(ids[c]) in matched,
                "centroid_shift": shifts.get(int(ids[c])),
                "top_features": json.dumps(_top_features(z_means[c], raw_means[c], raw.mean(axis=0), names)),
                "feature_means": json.dumps(
                    {name: round(float(v), 6) for name, v in zip(names, raw_means[c], strict=True)}
                ),
                "feature_z_scores": json.dumps(
                    {name: round(float(v), 4) for name, v in zip(names, z_means[c], strict=True)}
                ),
                "centroid": json.dumps(
                    {name: float(v) for name, v in zip(names, centres[c] * std + mean, strict=True)}
                ),
                "k": k,
                "method": config.method,
                "silhouette": silhouette,
            }
            for c in range(k)
        ]
    ).sort_values("cluster_id", ignore_index=True)
    label_by_id = dict(zip(profiles["cluster_id"], profiles["cluster_label"], strict=True))
    assignments = pd.DataFrame(
        {
            "customer_key": population["customer_key"].to_numpy(),
            "snapshot_date": np.full(n, snapshot.to_datetime64()),
            "cluster_id": cluster_id.astype(np.int32),
            "cluster_label": pd.Series(cluster_id).map(label_by_id).to_numpy(),
            "distance_to_centroid": distance,
        }
    )
    return ClusteringResult(
        assignments=assignments,
        profiles=profiles,
        selection=selection,
        k=k,
        silhouette=silhouette,
        features_used=names,
        features_missing=missing,
        matched=dict(matched),
        new_clusters=sorted(int(i) for i in ids if int(i) not in matched),
        retired_clusters=sorted(int(i) for i in previous_ids if int(i) not in matched),
    )


def _silhouette(z: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(z, labels))


def _nearest(z: np.ndarray, centres: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    out = np.empty(len(z), dtype=np.int64)
    for start in range(0, len(z), chunk):
        block = z[start : start + chunk]
        out[start : start + chunk] = (
            ((block[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        )
    return out


def _stable_ids(centroids, sizes, names, mean, std, previous, next_id, config):
    """Ids for this snapshot's clusters: a matched previous id, else a fresh one.

    Returns (ids per raw cluster, {id: previous id}, {id: centroid shift in current SDs}).
    """
    from scipy.optimize import linear_sum_assignment

    k = len(centroids)
    ids = np.full(k, -1, dtype=np.int64)
    matched, shifts = {}, {}
    previous = previous if previous is not None else pd.DataFrame()
    common = [name for name in names if name in previous.columns]
    if not previous.empty and common:
        index = [names.index(name) for name in common]
        current_z = (centroids[:, index] - mean[index]) / std[index]
        previous_z = (previous[common].to_numpy(dtype=float) - mean[index]) / std[index]
        cost = np.sqrt(((current_z[:, None, :] - previous_z[None, :, :]) ** 2).sum(axis=2))
        rows, cols = linear_sum_assignment(cost)
        for row, col in zip(rows, cols, strict=True):
            if config.max_match_distance is None or cost[row, col] <= config.max_match_distance:
                ids[row] = int(previous.index[col])
                matched[int(previous.index[col])] = int(previous.index[col])
                shifts[int(previous.index[col])] = float(cost[row, col])
    if next_id is None:
        next_id = int(max(previous.index)) + 1 if not previous.empty else 0
    for row in sorted(np.flatnonzero(ids < 0), key=lambda r: -sizes[r]):
        ids[row] = next_id
        next_id += 1
    return ids, matched, shifts


def _top_features(z_means, raw_means, overall_raw, names, top=3) -> list[dict]:
    order = np.argsort(-np.abs(z_means))[:top]
    return [
        {
            "feature": names[j],
            "z": round(float(z_means[j]), 3),
            "cluster_mean": round(float(raw_means[j]), 4),
            "base_mean": round(float(overall_raw[j]), 4),
        }
        for j in order
    ]


def _labels(z_means: np.ndarray, features: list[ClusterFeature], ids: np.ndarray, correlation) -> list[str]:
    """`web-first, deal seekers`: the two strongest deviations from the base, in words;
    a feature strongly correlated with one already named adds nothing and is skipped."""
    labels = []
    for row in z_means:
        chosen: list[int] = []
        for j in np.argsort(-np.abs(row)):
            if abs(row[j]) < 0.25 or len(chosen) == 2:
                break
            if all(abs(correlation[j, i]) < 0.6 for i in chosen):
                chosen.append(int(j))
        labels.append(", ".join(features[j].word(row[j] > 0) for j in chosen) or "average behaviour")
    for c, text in enumerate(labels):
        if labels.count(text) > 1:
            labels[c] = f"{text} #{ids[c]}"
    return labels
