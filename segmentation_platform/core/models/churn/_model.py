"""Churn propensity: the probability that a buyer has stopped buying for good.

Target: "churned at snapshot T" = the customer dropped out before T and will not buy again.
That state is never observed directly; what is observed is the follow-up after T. A
purchase in [T, C) (C = the current snapshot; nothing on or after C is read) proves the
customer was alive at T. No purchase in F = C - T days is evidence of dropout whose weight
depends on how often the customer buys: by Bayes with the BG/NBD model (core.clv, fitted
per snapshot on that snapshot's buyers only), the training label is

    P(dropped out | no purchase in F) = d / (d + (1 - d) * S_alive(F)),
    d = 1 - P(alive at T),  S_alive(F) = ((alpha + T_c) / (alpha + T_c + F)) ^ (r + x),

and 0 after a purchase. A slow buyer's silence weighs little, a weekly buyer's a lot, and a
customer without repeat purchases cannot have dropped out (BG/NBD's assumption, which the
CLV stage shares). Training rows come only from snapshots with at least H days of
follow-up (the "complete label window", T + H <= C); `fit_churn` drops later rows itself.

Two models compete on a time-based holdout (the latest complete snapshot):

- survival: lifelines Cox PH (or Weibull AFT) on time to next purchase, censored at the
  cut-off; P(churn) = S(t_max | x), the plateau of the survival curve at the longest
  follow-up seen in training (people who never buy again are the plateau).
- classifier: gradient boosting regressing the posterior labels (squared error: its
  optimum is P(churned | x)), calibrated on out-of-fold predictions.

Metrics count each holdout row once as churned with weight p and once as not with 1 - p.

Inputs: the feature store's columns plus BG/NBD signals (P(alive), expected purchases over
H, recency/age ratio) and email trends. The champion (lowest holdout log-loss against the
posterior labels) scores the current snapshot; both models' metrics, calibration and lift
tables go to the registry, their drivers to `models.churn_drivers`. With no complete label
window yet (the first H days of history) nothing is fitted: `status="insufficient_history"`,
no scores, and the asset's check says so.
"""

import time
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from segmentation_platform.core.config import ConfigError, Section, load_located_yaml
from segmentation_platform.core.config._paths import CONFIG_DIR
from segmentation_platform.core.models.clv import load_clv_config
from segmentation_platform.core.models.registry import ModelRecord

CHURN_CONFIG_PATH = CONFIG_DIR / "churn.yaml"
LOGIC_VERSION = "2"
SURVIVAL_MODEL = "churn_survival"
CLASSIFIER_MODEL = "churn_classifier"
PROBABILITY_CLIP = 1e-4
SCORE_COLUMNS = {
    "customer_key": "VARCHAR",
    "snapshot_date": "DATE",
    "churn_probability": "DOUBLE",
    "risk_tier": "VARCHAR",
    "survival_churn_probability": "DOUBLE",
    "classifier_churn_probability": "DOUBLE",
    "champion_model": "VARCHAR",
    "horizon_days": "INTEGER",
}
DRIVER_COLUMNS = {
    "snapshot_date": "DATE",
    "model": "VARCHAR",
    "is_champion": "BOOLEAN",
    "feature": "VARCHAR",
    "importance": "DOUBLE",
    "importance_kind": "VARCHAR",
    "effect": "DOUBLE",
    "effect_kind": "VARCHAR",
    "p_value": "DOUBLE",
    "direction": "VARCHAR",
}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskTier:
    name: str
    min_probability: float | None  # None: the lowest tier, takes the rest


@dataclass(frozen=True)
class ChurnConfig:
    horizon_days: int = 90
    risk_tiers: tuple[RiskTier, ...] = (
        RiskTier("high", 0.6),
        RiskTier("medium", 0.3),
        RiskTier("low", None),
    )
    auc_floor: float = 0.70
    frequency_column: str | None = "frequency"
    min_frequency: float = 1
    exclude: tuple[str, ...] = ("customer_key", "snapshot_date", "first_purchase_at", "last_purchase_at")
    categorical: tuple[str, ...] = ("acquisition_channel", "lifecycle_stage")
    max_snapshots: int = 26
    max_rows: int = 80_000
    holdout_snapshots: int = 1
    purge_label_overlap: bool = True
    refit_champion: bool = True
    seed: int = 7
    survival_model: str = "cox_ph"
    penalizer: float = 0.01
    survival_max_rows: int = 30_000
    max_iter: int = 150
    learning_rate: float = 0.08
    max_leaf_nodes: int = 31
    calibration: str = "isotonic"
    calibration_folds: int = 3
    permutation_rows: int = 2_000
    permutation_repeats: int = 2
    threads: int | None = 1
    declared_version: int = 1
    # The BG/NBD fits behind the labels and signals are the CLV stage's model, with its prior.
    bgnbd_penalizer: float = 0.0

    def tier_of(self, probability: np.ndarray) -> np.ndarray:
        """Risk tier names; NaN probability -> None."""
        probability = np.asarray(probability, dtype=float)
        tiers = np.full(len(probability), None, dtype=object)
        open_rows = ~np.isnan(probability)
        for tier in self.risk_tiers:
            hit = (
                open_rows
                if tier.min_probability is None
                else open_rows & (probability >= tier.min_probability)
            )
            tiers[hit] = tier.name
            open_rows &= ~hit
        return tiers


def load_churn_config(path: Path | str = CHURN_CONFIG_PATH) -> ChurnConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read churn config ({exc.strerror})") from None
    top = Section(load_located_yaml(text, path), path, "")
    top.only(
        ["version", "horizon_days", "risk_tiers", "auc_floor", "population", "features", "training"]
        + ["survival", "classifier", "importance", "threads"],
        required=["version", "horizon_days", "risk_tiers", "auc_floor"],
    )
    tiers_data = top.data["risk_tiers"]
    if not isinstance(tiers_data, list) or len(tiers_data) < 2:
        raise top.error("risk_tiers", "risk_tiers must list at least two tiers, highest first")
    tiers, previous = [], None
    for index, item in enumerate(tiers_data):
        tier = Section(item, path, f"risk_tiers[{index}]", tiers_data.line_of(index)).only(
            ["name", "min_probability"], required=["name"]
        )
        last = index == len(tiers_data) - 1
        if last != (not tier.has("min_probability")):
            raise tier.error(
                None, "every tier but the last needs min_probability; the last takes the rest and has none"
            )
        minimum = None if last else tier.number("min_probability", low=0.0, high=1.0)
        if minimum is not None and previous is not None and minimum >= previous:
            raise tier.error("min_probability", "risk tiers must be listed highest min_probability first")
        previous = minimum if minimum is not None else previous
        tiers.append(RiskTier(tier.text("name", word=True), minimum))
    kwargs: dict = {
        "bgnbd_penalizer": load_clv_config().penalizer,
        "declared_version": top.number("version", integer=True, low=1),
        "horizon_days": top.number("horizon_days", integer=True, low=1, high=3650),
        "risk_tiers": tuple(tiers),
        "auc_floor": top.number("auc_floor", low=0.0, high=1.0),
        "threads": None
        if top.data.get("threads", 1) is None
        else top.number("threads", 1, low=1, integer=True),
    }
    if top.has("population"):
        section = top.section("population").only(["frequency_column", "min_frequency"])
        kwargs["frequency_column"] = section.data.get("frequency_column") or None
        kwargs["min_frequency"] = section.number("min_frequency", 1, low=0)
    if top.has("features"):
        section = top.section("features").only(["exclude", "categorical"])
        kwargs["exclude"] = section.words("exclude", list(ChurnConfig.exclude))
        kwargs["categorical"] = tuple(section.data.get("categorical") or ())
    if top.has("training"):
        section = top.section("training").only(
            [
                "max_snapshots",
                "max_rows",
                "holdout_snapshots",
                "purge_label_overlap",
                "refit_champion",
                "seed",
            ]
        )
        kwargs |= {
            "max_snapshots": section.number("max_snapshots", 26, low=1, integer=True),
            "max_rows": section.number("max_rows", 80_000, low=100, integer=True),
            "holdout_snapshots": section.number("holdout_snapshots", 1, low=1, integer=True),
            "purge_label_overlap": section.flag("purge_label_overlap", True),
            "refit_champion": section.flag("refit_champion", True),
            "seed": section.number("seed", 7, integer=True),
        }
    if top.has("survival"):
        section = top.section("survival").only(["model", "penalizer", "max_rows"])
        kwargs |= {
            "survival_model": section.choice("model", ["cox_ph", "weibull_aft"], "cox_ph"),
            "penalizer": section.number("penalizer", 0.01, low=0.0),
            "survival_max_rows": section.number("max_rows", 30_000, low=100, integer=True),
        }
    if top.has("classifier"):
        section = top.section("classifier").only(
            ["max_iter", "learning_rate", "max_leaf_nodes", "calibration", "calibration_folds"]
        )
        kwargs |= {
            "max_iter": section.number("max_iter", 150, low=10, integer=True),
            "learning_rate": section.number("learning_rate", 0.08, low=0.001, high=1.0),
            "max_leaf_nodes": section.number("max_leaf_nodes", 31, low=2, integer=True),
            "calibration": section.choice("calibration", ["isotonic", "sigmoid"], "isotonic"),
            "calibration_folds": section.number("calibration_folds", 3, low=2, high=10, integer=True),
        }
    if top.has("importance"):
        section = top.section("importance").only(["permutation_rows", "repeats"])
        kwargs |= {
            "permutation_rows": section.number("permutation_rows", 2_000, low=100, integer=True),
            "permutation_repeats": section.number("repeats", 2, low=1, integer=True),
        }
    return ChurnConfig(**kwargs)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _day(value) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def complete_snapshots(snapshot_dates, as_of, horizon_days: int) -> list[pd.Timestamp]:
    """Snapshots whose whole label window [T, T+H) lies before `as_of`, oldest first."""
    cutoff = _day(as_of) - pd.Timedelta(days=horizon_days)
    return sorted({_day(d) for d in snapshot_dates if _day(d) <= cutoff})


BGNBD_COLUMNS = ("bgnbd_p_alive", "bgnbd_expected_purchases", "recency_ratio")
TREND_COLUMNS = ("email_open_trend", "email_click_trend")
# Per-row BG/NBD posterior of the purchase rate if alive, Gamma(shape, rate): label inputs, never model inputs.
_SHAPE, _RATE = "_bgnbd_shape", "_bgnbd_rate"
MIN_BGNBD_BUYERS = 30
# Expected customers per class (sum of soft labels) below which a split cannot validate a model.
MIN_EXPECTED_PER_CLASS = 5


def add_signals(frame: pd.DataFrame, horizon_days: int, penalizer: float = 0.0) -> pd.DataFrame:
    """BG/NBD and email-trend columns, each snapshot on its own rows (point in time).

    BG/NBD (core.clv) is fitted per snapshot on its buyers: x = repeat purchase days,
    t_x = first to last purchase day, T_c = first purchase day to the snapshot. Adds
    P(alive), expected purchases over the horizon, t_x / T_c, email trends (last 30 days
    against the 90-day monthly average) and the label inputs r + x and alpha + T_c.
    A snapshot with too few buyers or a failed fit gets NaN (its rows get no label).
    """
    from segmentation_platform.core.models.clv import expected_purchases, fit_bgnbd, probability_alive

    out = frame
    n = len(out)
    columns = {name: np.full(n, np.nan) for name in (*BGNBD_COLUMNS, _SHAPE, _RATE)}
    snapshot = pd.to_datetime(out["snapshot_date"]).dt.normalize().to_numpy()
    first = pd.to_datetime(out["first_purchase_at"]).dt.normalize().to_numpy()
    last = pd.to_datetime(out["last_purchase_at"]).dt.normalize().to_numpy()
    x_all = pd.to_numeric(out["repeat_frequency"], errors="coerce").to_numpy(dtype=float)
    t_x_all = (last - first) / np.timedelta64(1, "D")
    age_all = (snapshot - first) / np.timedelta64(1, "D")
    valid = ~(np.isnan(x_all) | np.isnan(t_x_all) | np.isnan(age_all)) & (age_all > 0)
    valid &= (t_x_all >= 0) & (t_x_all <= age_all)
    for day in np.unique(snapshot[valid]):
        rows = np.flatnonzero(valid & (snapshot == day))
        if len(rows) < MIN_BGNBD_BUYERS:
            continue
        x, t_x, age = x_all[rows], t_x_all[rows], age_all[rows]
        try:
            params = fit_bgnbd(x, t_x, age, penalizer=penalizer).params
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        with np.errstate(all="ignore"):
            columns["bgnbd_p_alive"][rows] = probability_alive(params, x, t_x, age)
            columns["bgnbd_expected_purchases"][rows] = expected_purchases(params, horizon_days, x, t_x, age)
        columns["recency_ratio"][rows] = t_x / age
        columns[_SHAPE][rows] = params.r + x
        columns[_RATE][rows] = params.alpha + age
    for trend, kind in zip(TREND_COLUMNS, ("opens", "clicks"), strict=True):
        recent, longer = f"email_{kind}_30d", f"email_{kind}_90d"
        if recent in out.columns and longer in out.columns:
            columns[trend] = (
                pd.to_numeric(out[recent], errors="coerce") - pd.to_numeric(out[longer], errors="coerce") / 3
            ).to_numpy(dtype=float)
    return out.assign(**columns)


def label_snapshots(rows: pd.DataFrame, purchases: pd.DataFrame, as_of, horizon_days: int) -> pd.DataFrame:
    """Time to next purchase and the churn label, for (customer_key, snapshot_date) rows.

    Only purchases before `as_of` are read. `duration_days` runs from the snapshot to the
    next purchase (`purchased`) or to `as_of` (censored). `churned` is the posterior
    probability that the customer had dropped out at T: 0 after a purchase, else
    d / (d + (1 - d) * S_alive(F)) from the rows' BG/NBD columns (`add_signals`); defined
    only where T + H <= as_of (NaN otherwise, and where the BG/NBD fit is missing).
    """
    as_of = _day(as_of)
    known = purchases_before(purchases, as_of)
    keyed = rows[["customer_key", "snapshot_date"]].copy()
    keyed["_row"] = np.arange(len(keyed))
    keyed["_start"] = pd.to_datetime(keyed["snapshot_date"]).dt.normalize().astype("datetime64[ns]")
    keyed = keyed.sort_values("_start", kind="stable")
    matched = pd.merge_asof(
        keyed,
        known.rename(columns={"purchased_at": "_next"}),
        left_on="_start",
        right_on="_next",
        by="customer_key",
        direction="forward",
        allow_exact_matches=True,
    ).sort_values("_row")
    start = matched["_start"].to_numpy()
    next_purchase = matched["_next"].to_numpy()
    purchased = ~pd.isna(next_purchase)
    end = np.where(purchased, next_purchase, np.datetime64(as_of, "ns"))
    duration = (end - start) / np.timedelta64(1, "D")
    follow_up = (np.datetime64(as_of, "ns") - start) / np.timedelta64(1, "D")
    dead = 1 - rows["bgnbd_p_alive"].to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        silent_if_alive = np.power(
            rows[_RATE].to_numpy(dtype=float) / (rows[_RATE].to_numpy(dtype=float) + follow_up),
            rows[_SHAPE].to_numpy(dtype=float),
        )
        posterior = dead / (dead + (1 - dead) * silent_if_alive)
    churned = np.where(purchased, 0.0, np.where(dead <= 0, 0.0, posterior))
    churned[np.isnan(dead)] = np.nan
    churned[start + np.timedelta64(horizon_days, "D") > np.datetime64(as_of, "ns")] = np.nan
    out = rows.copy()
    out["duration_days"] = np.maximum(duration.astype(float), 1.0 / 24)
    out["purchased"] = purchased
    out["churned"] = churned
    return out


def as_weighted(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft labels as binary rows: row i once as churned (weight p_i), once as not (1 - p_i).

    Returns (row index, binary label, weight) for the rows with a positive weight."""
    p = np.asarray(labels, dtype=float)
    n = len(p)
    index = np.concatenate([np.arange(n), np.arange(n)])
    binary = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
    weight = np.concatenate([p, 1 - p])
    keep = weight > 0
    return index[keep], binary[keep], weight[keep]


# --------------------------------------------------------------------------------------------
# Feature preparation
# --------------------------------------------------------------------------------------------


@dataclass
class FeaturePrep:
    """Column choice and transforms learnt on training rows, applied unchanged when scoring."""

    numeric: list[str]
    categories: dict[str, list[str]]
    medians: dict[str, float]
    log_columns: set[str]
    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def fit(cls, frame: pd.DataFrame, config: ChurnConfig) -> "FeaturePrep":
        excluded = set(config.exclude) | {"churned", "purchased", "duration_days", _SHAPE, _RATE}
        numeric, categories = [], {}
        for column in frame.columns:
            if column in excluded:
                continue
            series = frame[column]
            if column in config.categorical:
                values = series.dropna().astype(str)
                levels = values.value_counts().index[:50].tolist()
                if len(levels) >= 2:
                    categories[column] = sorted(levels)
            elif pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
                values = series.astype(float)
                if values.notna().any() and values.std(skipna=True) > 0:
                    numeric.append(column)
        medians, log_columns, means, stds = {}, set(), {}, {}
        for column in numeric:
            values = frame[column].astype(float)
            medians[column] = float(values.median())
            filled = values.fillna(medians[column])
            if filled.min() >= 0 and filled.skew() > 2:
                log_columns.add(column)
                filled = np.log1p(filled)
            means[column], stds[column] = float(filled.mean()), float(filled.std()) or 1.0
        return cls(numeric, categories, medians, log_columns, means, stds)

    @property
    def columns(self) -> list[str]:
        return self.numeric + list(self.categories)

    def classifier_matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw numeric values (the trees need no scaling, NaN is native) plus fixed categories."""
        data = {column: frame[column].astype(float).to_numpy() for column in self.numeric}
        for column, levels in self.categories.items():
            data[column] = pd.Categorical(frame[column].astype("string").to_numpy(), categories=levels)
        return pd.DataFrame(data, index=frame.index)

    def survival_matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Median-filled, log1p for heavy tails, standardized and clipped; categories one-hot."""
        data = {}
        for column in self.numeric:
            values = frame[column].astype(float).fillna(self.medians[column]).to_numpy()
            if column in self.log_columns:
                values = np.log1p(np.maximum(values, 0))
            data[column] = np.clip((values - self.means[column]) / self.stds[column], -5, 5)
        for column, levels in self.categories.items():
            values = frame[column].astype("string")
            for level in levels[1:]:
                data[f"{column}={level}"] = values.eq(level).fillna(False).astype(float).to_numpy()
        return pd.DataFrame(data, index=frame.index)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class SurvivalChurnModel:
    """P(never buys again) ~ S(t_max | x): the plateau of a lifelines model of time to next
    purchase, read at the longest follow-up seen in training."""

    def __init__(self, config: ChurnConfig):
        self.config = config
        self.fitter = None
        self.plateau_days = float(config.horizon_days)
        self.columns: list[str] = []
        self.centre = np.empty(0)

    @property
    def kind(self) -> str:
        return (
            "lifelines.CoxPHFitter"
            if self.config.survival_model == "cox_ph"
            else "lifelines.WeibullAFTFitter"
        )

    def fit(self, matrix: pd.DataFrame, duration: np.ndarray, purchased: np.ndarray) -> "SurvivalChurnModel":
        from lifelines import CoxPHFitter, WeibullAFTFitter

        data = matrix.loc[:, matrix.std() > 1e-9].copy()
        self.columns = list(data.columns)
        data["duration_days"] = duration
        data["purchased"] = purchased.astype(int)
        if self.config.survival_model == "cox_ph":
            fitter = CoxPHFitter(penalizer=self.config.penalizer)
        else:
            fitter = WeibullAFTFitter(penalizer=self.config.penalizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter.fit(data, duration_col="duration_days", event_col="purchased")
        self.fitter = fitter
        self.plateau_days = float(np.max(duration))
        # lifelines' baseline is at the training mean of the covariates (unit weights).
        self.centre = data[self.columns].mean().to_numpy()
        return self

    def predict(self, matrix: pd.DataFrame) -> np.ndarray:
        horizon = self.plateau_days
        if self.config.survival_model == "cox_ph":
            baseline = self.fitter.baseline_survival_.iloc[:, 0]
            at_horizon = baseline[baseline.index <= horizon]
            s0 = float(at_horizon.iloc[-1]) if len(at_horizon) else 1.0
            # exp((x - mean) . beta), as lifelines' predict_partial_hazard, without its per-call
            # DataFrame overhead (4 s at 1M customers).
            beta = self.fitter.params_[self.columns].to_numpy()
            partial = np.exp((matrix[self.columns].to_numpy(dtype=float) - self.centre) @ beta)
            probability = np.power(s0, partial)
        else:
            survival = self.fitter.predict_survival_function(matrix[self.columns], times=[horizon])
            probability = survival.to_numpy()[0]
        return np.clip(probability, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)

    def drivers(self) -> pd.DataFrame:
        summary = self.fitter.summary
        if self.config.survival_model == "cox_ph":
            coef = summary["coef"]
            effect_kind = "hazard_ratio_per_sd"
            raises_churn = coef < 0  # a higher purchase hazard means a sooner purchase
        else:
            summary = summary.loc["lambda_"].drop(index="Intercept", errors="ignore")
            coef = summary["coef"]
            effect_kind = "time_ratio_per_sd"
            raises_churn = coef > 0  # a longer expected wait means more churn
        return pd.DataFrame(
            {
                "feature": coef.index.astype(str),
                "importance": coef.abs().to_numpy(),
                "importance_kind": "abs_coefficient",
                "effect": np.exp(coef.to_numpy()),
                "effect_kind": effect_kind,
                "p_value": summary["p"].to_numpy(),
                "direction": np.where(raises_churn, "raises churn", "lowers churn"),
            }
        ).sort_values("importance", ascending=False, ignore_index=True)


class ClassifierChurnModel:
    """Calibrated gradient boosting on label probabilities: probabilities that mean what they say.

    The booster regresses the label probability (squared error: its optimum is the
    conditional mean, i.e. P(churned | x)); a calibrator learnt on out-of-fold predictions
    (isotonic, or a logistic curve for `sigmoid`) maps its output to probabilities, and one
    booster refit on all rows scores. Label probabilities need no row weights, which keep
    scikit-learn's histogram binning on its fast path."""

    def __init__(self, config: ChurnConfig):
        self.config = config
        self.booster = None
        self.calibrator = None

    kind = "sklearn.HistGradientBoostingRegressor + cross-fitted calibration"

    def _booster(self):
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=self.config.max_iter,
            learning_rate=self.config.learning_rate,
            max_leaf_nodes=self.config.max_leaf_nodes,
            categorical_features="from_dtype",
            early_stopping=True,
            random_state=self.config.seed,
        )

    def fit(self, matrix: pd.DataFrame, churned: np.ndarray) -> "ClassifierChurnModel":
        """`churned`: label probabilities in [0, 1] (see `label_snapshots`)."""
        from sklearn.model_selection import KFold, cross_val_predict

        label = np.asarray(churned, dtype=float)
        folds = KFold(self.config.calibration_folds, shuffle=True, random_state=self.config.seed)
        out_of_fold = cross_val_predict(self._booster(), matrix, label, cv=folds)
        self.calibrator = self._calibrator(out_of_fold, label)
        self.booster = self._booster().fit(matrix, label)
        return self

    def _calibrator(self, predicted: np.ndarray, label: np.ndarray):
        if self.config.calibration == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(predicted, label)
        from sklearn.linear_model import LogisticRegression

        rows, binary, weight = as_weighted(label)
        logistic = LogisticRegression().fit(predicted[rows, None], binary, sample_weight=weight)
        return _Sigmoid(logistic)

    def predict(self, matrix: pd.DataFrame) -> np.ndarray:
        probability = self.calibrator.predict(self.booster.predict(matrix))
        return np.clip(probability, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)

    def drivers(self, matrix: pd.DataFrame, churned: np.ndarray) -> pd.DataFrame:
        """Permutation importance on holdout rows: how much log-loss worsens without the feature.

        All permuted copies go through one predict call; per-call overhead, not rows, is
        what makes scikit-learn's loop slow for a calibrated ensemble."""
        from sklearn.metrics import log_loss

        rng = np.random.default_rng(self.config.seed)
        rows, y, weight = as_weighted(churned)

        def loss(probability: np.ndarray) -> float:
            return log_loss(y, probability[rows], sample_weight=weight, labels=[0, 1])

        baseline = loss(self.predict(matrix))
        copies = []
        for _ in range(self.config.permutation_repeats):
            for column in matrix.columns:
                permuted = matrix.copy()
                shuffled = matrix[column].iloc[rng.permutation(len(matrix))]
                permuted[column] = shuffled.set_axis(matrix.index)  # keeps a categorical dtype
                copies.append(permuted)
        predicted_all = self.predict(pd.concat(copies, ignore_index=True)).reshape(len(copies), len(matrix))
        losses = np.array([loss(p) for p in predicted_all])
        importance = (losses.reshape(self.config.permutation_repeats, -1) - baseline).mean(axis=0)
        predicted = pd.Series(self.predict(matrix), index=matrix.index)
        directions = []
        for column in matrix.columns:
            values = matrix[column]
            if isinstance(values.dtype, pd.CategoricalDtype) or values.nunique() < 2:
                directions.append("mixed")
                continue
            rho = values.rank().corr(predicted.rank())
            directions.append("raises churn" if rho > 0.05 else "lowers churn" if rho < -0.05 else "mixed")
        return pd.DataFrame(
            {
                "feature": list(matrix.columns),
                "importance": importance,
                "importance_kind": "permutation_log_loss",
                "effect": np.nan,
                "effect_kind": None,
                "p_value": np.nan,
                "direction": directions,
            }
        ).sort_values("importance", ascending=False, ignore_index=True)


class _Sigmoid:
    """Platt scaling as a `predict` on the booster's output."""

    def __init__(self, logistic):
        self.logistic = logistic

    def predict(self, predicted: np.ndarray) -> np.ndarray:
        return self.logistic.predict_proba(np.asarray(predicted, dtype=float)[:, None])[:, 1]


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate(
    churned: np.ndarray, probability: np.ndarray, base_rate: float
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """AUC, Brier (vs the Brier of always predicting the training base rate), log-loss,
    a calibration table by decile of prediction, and lift by decile of risk.

    `churned` holds label probabilities: each row counts as churned with weight p and as
    not churned with weight 1 - p (binary labels are the special case)."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    label = np.asarray(churned, dtype=float)
    probability = np.clip(np.asarray(probability, dtype=float), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    rows, y, weight = as_weighted(label)
    both_classes = 0 < label.sum() < len(label)
    metrics = {
        "auc": float(roc_auc_score(y, probability[rows], sample_weight=weight))
        if both_classes
        else float("nan"),
        "brier": float(brier_score_loss(y, probability[rows], sample_weight=weight)),
        "base_rate_brier": float(np.average((y - base_rate) ** 2, weights=weight)),
        "log_loss": float(log_loss(y, probability[rows], sample_weight=weight, labels=[0, 1])),
        "holdout_churn_rate": float(label.mean()),
        "mean_predicted": float(probability.mean()),
    }
    metrics["brier_skill"] = (
        1 - metrics["brier"] / metrics["base_rate_brier"] if metrics["base_rate_brier"] else 0.0
    )
    order = np.argsort(probability, kind="stable")
    calibration = pd.DataFrame(
        [
            {
                "decile": i + 1,
                "customers": len(part),
                "mean_predicted": float(probability[part].mean()),
                "observed_churn_rate": float(label[part].mean()),
            }
            for i, part in enumerate(np.array_split(order, 10))
            if len(part)
        ]
    )
    overall, churners = label.mean(), max(label.sum(), 1e-12)
    lift_rows, captured = [], 0.0
    for i, part in enumerate(np.array_split(order[::-1], 10)):
        if not len(part):
            continue
        captured += label[part].sum()
        lift_rows.append(
            {
                "decile": i + 1,
                "customers": len(part),
                "churn_rate": float(label[part].mean()),
                "lift": float(label[part].mean() / overall) if overall else float("nan"),
                "cumulative_capture": float(captured / churners),
            }
        )
    metrics["top_decile_lift"] = lift_rows[0]["lift"] if lift_rows else float("nan")
    return metrics, calibration, pd.DataFrame(lift_rows)


# --------------------------------------------------------------------------------------------
# Fit and score
# --------------------------------------------------------------------------------------------


@dataclass
class ModelReport:
    name: str
    kind: str
    status: str  # fitted | failed
    message: str = ""
    is_champion: bool = False
    metrics: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    lift: pd.DataFrame = field(default_factory=pd.DataFrame)
    drivers: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_training_rows: int = 0
    n_holdout_rows: int = 0
    fit_seconds: float = 0.0  # run-time, not a property of the model: kept out of the registry


@dataclass
class ChurnResult:
    status: str  # fitted | insufficient_history | single_class | no_model
    message: str
    as_of: date
    horizon_days: int
    scores: pd.DataFrame
    models: list[ModelReport] = field(default_factory=list)
    champion: str | None = None
    validation_scheme: str | None = None
    training_snapshots: list[date] = field(default_factory=list)
    holdout_snapshots: list[date] = field(default_factory=list)
    base_rate: float | None = None

    @property
    def champion_report(self) -> ModelReport | None:
        return next((m for m in self.models if m.is_champion), None)

    @property
    def champion_auc(self) -> float | None:
        report = self.champion_report
        return report.metrics.get("auc") if report else None

    def drivers(self) -> pd.DataFrame:
        frames = [
            m.drivers.assign(model=m.name, is_champion=m.is_champion, snapshot_date=pd.Timestamp(self.as_of))
            for m in self.models
            if len(m.drivers)
        ]
        if not frames:
            return pd.DataFrame({name: [] for name in DRIVER_COLUMNS})
        return pd.concat(frames, ignore_index=True)[list(DRIVER_COLUMNS)]

    def registry_records(self, fitted_at: datetime, version: str) -> list[ModelRecord]:
        dates = sorted(self.training_snapshots + self.holdout_snapshots)
        return [
            ModelRecord(
                model=m.name,
                version=version,
                snapshot_date=self.as_of,
                fitted_at=fitted_at,
                training_start=dates[0] if dates else None,
                training_end=dates[-1] if dates else None,
                n_training_rows=m.n_training_rows,
                parameters=m.parameters | {"kind": m.kind, "status": m.status, "message": m.message},
                metrics=m.metrics
                | {
                    "validation_scheme": self.validation_scheme,
                    "holdout_snapshots": [d.isoformat() for d in self.holdout_snapshots],
                    "calibration": m.calibration.to_dict(orient="records"),
                    "lift": m.lift.to_dict(orient="records"),
                },
                is_champion=m.is_champion,
            )
            for m in self.models
        ]


def empty_scores() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=_pandas_dtype(t)) for name, t in SCORE_COLUMNS.items()})


def _pandas_dtype(sql_type: str) -> str:
    return {"DOUBLE": "float64", "INTEGER": "int64", "DATE": "datetime64[ns]"}.get(sql_type, "object")


def _flags_as_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Boolean columns that arrive as objects (Arrow bool with nulls) become 0/1/NaN."""
    converted = {}
    for column in frame.columns:
        if frame[column].dtype == object:
            sample = frame[column].dropna().head(1_000)
            if len(sample) and sample.map(lambda v: isinstance(v, bool | np.bool_)).all():
                converted[column] = frame[column].map({True: 1.0, False: 0.0})
    return frame.assign(**converted) if converted else frame


def _take(frame: pd.DataFrame, snapshot: pd.Series, positions: np.ndarray) -> pd.DataFrame:
    """Rows by position, with the normalized snapshot_date and boolean flags as numbers."""
    rows = frame.iloc[positions]
    return _flags_as_numbers(rows.assign(snapshot_date=snapshot.iloc[positions].to_numpy()))


def _eligible_mask(frame: pd.DataFrame, config: ChurnConfig) -> np.ndarray:
    column = config.frequency_column
    if column and column in frame.columns:
        return (pd.to_numeric(frame[column], errors="coerce").fillna(0) >= config.min_frequency).to_numpy()
    return np.ones(len(frame), dtype=bool)


def eligible(frame: pd.DataFrame, config: ChurnConfig) -> pd.DataFrame:
    """Buyers only: someone who never bought cannot stop buying."""
    return frame[_eligible_mask(frame, config)]


def purchases_before(purchases: pd.DataFrame, cutoff, customers: pd.Series | None = None) -> pd.DataFrame:
    """customer_key, purchased_at (ns) strictly before `cutoff`, of `customers` only, by time."""
    times = pd.to_datetime(purchases["purchased_at"])
    keep = (times < _day(cutoff)).to_numpy()
    if customers is not None:
        keep &= purchases["customer_key"].isin(pd.unique(customers)).to_numpy()
    return pd.DataFrame(
        {
            "customer_key": purchases["customer_key"].to_numpy()[keep],
            "purchased_at": times.to_numpy()[keep].astype("datetime64[ns]"),
        }
    ).sort_values("purchased_at", kind="stable", ignore_index=True)


def fit_churn(features: pd.DataFrame, purchases: pd.DataFrame, as_of, config: ChurnConfig) -> ChurnResult:
    """Validate both models on a time-based holdout, pick the champion, score `as_of`.

    `features`: customer_features rows of any snapshots (later than `as_of` are dropped);
    `purchases`: customer_key, purchased_at (on or after `as_of` are dropped).
    """
    import sklearn.ensemble  # noqa: F401  (load OpenMP before limiting it: threadpoolctl limits loaded libraries only)
    from threadpoolctl import threadpool_limits

    # OpenMP spin-waiting makes boosting 10-20x slower when cores are shared with other
    # runs (Dagster runs several processes at once); one thread per process is the default.
    with threadpool_limits(config.threads):
        return _fit_churn(features, purchases, as_of, config)


def _fit_churn(features: pd.DataFrame, purchases: pd.DataFrame, as_of, config: ChurnConfig) -> ChurnResult:
    as_of_ts = _day(as_of)
    horizon = config.horizon_days
    # Masks first, copies last: at 1M customers every full-frame copy costs seconds and GBs.
    snapshot = pd.to_datetime(features["snapshot_date"]).dt.normalize()
    usable = (snapshot <= as_of_ts).to_numpy() & _eligible_mask(features, config)
    complete = complete_snapshots(snapshot[usable].unique(), as_of_ts, horizon)[-config.max_snapshots :]
    current = _take(features, snapshot, np.flatnonzero(usable & (snapshot == as_of_ts).to_numpy()))
    result = ChurnResult(
        status="fitted", message="", as_of=as_of_ts.date(), horizon_days=horizon, scores=empty_scores()
    )
    if not complete:
        earliest = snapshot[usable].min()
        first_possible = (earliest + pd.Timedelta(days=horizon)).date() if pd.notna(earliest) else None
        result.status = "insufficient_history"
        result.message = (
            f"No snapshot on or before {(as_of_ts - pd.Timedelta(days=horizon)).date()} has a complete "
            f"{horizon}-day label window; churn is not scored at {as_of_ts.date()}"
            + (f" (first scorable snapshot: {first_possible} or later)." if first_possible else ".")
        )
        return result

    rng = np.random.default_rng(config.seed)
    positions = np.flatnonzero(usable & snapshot.isin(complete).to_numpy())
    if len(positions) > config.max_rows:
        positions = np.sort(rng.choice(positions, config.max_rows, replace=False))
    history = add_signals(
        _take(features, snapshot, positions).reset_index(drop=True), horizon, config.bgnbd_penalizer
    )
    current = add_signals(current, horizon, config.bgnbd_penalizer)
    purchases = purchases_before(purchases, as_of_ts, customers=history["customer_key"])

    holdout_dates = complete[-min(config.holdout_snapshots, len(complete) - 1) :] if len(complete) > 1 else []
    earlier = [d for d in complete if d not in holdout_dates]
    validation_as_of = as_of_ts
    if not holdout_dates:
        scheme = "random_customer_split"
        customers = history["customer_key"].unique()
        test_customers = set(rng.choice(customers, max(1, len(customers) * 3 // 10), replace=False))
        is_holdout = history["customer_key"].isin(test_customers).to_numpy()
    else:
        purged = [d for d in earlier if d + pd.Timedelta(days=horizon) <= min(holdout_dates)]
        if config.purge_label_overlap and purged:
            scheme, earlier, validation_as_of = "time_split_purged", purged, min(holdout_dates)
        else:
            scheme = "time_split_overlapping_labels"
        is_holdout = history["snapshot_date"].isin(holdout_dates).to_numpy()
    in_validation_train = ~is_holdout & history["snapshot_date"].isin(earlier).to_numpy()
    result.validation_scheme = scheme
    result.training_snapshots = [d.date() for d in earlier]
    result.holdout_snapshots = [d.date() for d in holdout_dates] or [d.date() for d in complete]

    train = label_snapshots(history[in_validation_train], purchases, validation_as_of, horizon)
    train = train[train["churned"].notna()]
    holdout = label_snapshots(history[is_holdout], purchases, as_of_ts, horizon)
    holdout = holdout[holdout["churned"].notna()]
    if _too_few_of_a_class(train["churned"]) or _too_few_of_a_class(holdout["churned"]):
        result.status = "single_class"
        result.message = (
            f"Churn labels hold fewer than {MIN_EXPECTED_PER_CLASS} expected customers of a class "
            f"(train: {train['churned'].sum():.1f} churned of {len(train)}, holdout: "
            f"{holdout['churned'].sum():.1f} of {len(holdout)}); no model can be validated at {as_of_ts.date()}."
        )
        return result
    base_rate = float(train["churned"].mean())
    result.base_rate = base_rate

    prep = FeaturePrep.fit(train, config)
    survival = SurvivalChurnModel(config)
    classifier = ClassifierChurnModel(config)
    reports = {
        SURVIVAL_MODEL: ModelReport(SURVIVAL_MODEL, survival.kind, "fitted"),
        CLASSIFIER_MODEL: ModelReport(CLASSIFIER_MODEL, classifier.kind, "fitted"),
    }
    fitted = {}
    survival_rows = train
    if len(train) > config.survival_max_rows:
        survival_rows = train.iloc[np.sort(rng.choice(len(train), config.survival_max_rows, replace=False))]
    attempts = {
        SURVIVAL_MODEL: lambda: survival.fit(
            prep.survival_matrix(survival_rows),
            survival_rows["duration_days"].to_numpy(),
            survival_rows["purchased"].to_numpy(),
        ),
        CLASSIFIER_MODEL: lambda: classifier.fit(prep.classifier_matrix(train), train["churned"].to_numpy()),
    }
    for name, attempt in attempts.items():
        began = time.perf_counter()
        try:
            fitted[name] = attempt()
        except Exception as exc:  # one model failing must not take the other down
            reports[name].status, reports[name].message = "failed", f"{type(exc).__name__}: {exc}"
        reports[name].fit_seconds = round(time.perf_counter() - began, 2)
    if not fitted:
        result.status, result.message = (
            "no_model",
            "; ".join(f"{r.name}: {r.message}" for r in reports.values()),
        )
        result.models = list(reports.values())
        return result

    holdout_y = holdout["churned"].to_numpy()
    for name, model in fitted.items():
        report = reports[name]
        matrix = prep.survival_matrix(holdout) if name == SURVIVAL_MODEL else prep.classifier_matrix(holdout)
        report.metrics, report.calibration, report.lift = evaluate(
            holdout_y, model.predict(matrix), base_rate
        )
        report.n_training_rows = len(survival_rows) if name == SURVIVAL_MODEL else len(train)
        report.n_holdout_rows = len(holdout)
    champion = min(fitted, key=lambda n: reports[n].metrics["log_loss"])
    reports[champion].is_champion = True
    result.champion = champion

    if CLASSIFIER_MODEL in fitted:
        sample = holdout
        if len(sample) > config.permutation_rows:
            sample = holdout.iloc[np.sort(rng.choice(len(holdout), config.permutation_rows, replace=False))]
        reports[CLASSIFIER_MODEL].drivers = classifier.drivers(
            prep.classifier_matrix(sample), sample["churned"].to_numpy()
        )

    score_prep = prep
    if config.refit_champion and scheme != "random_customer_split":
        everything = label_snapshots(history, purchases, as_of_ts, horizon)
        everything = everything[everything["churned"].notna()]
        if champion == SURVIVAL_MODEL and len(everything) > config.survival_max_rows:
            everything = everything.iloc[
                np.sort(rng.choice(len(everything), config.survival_max_rows, replace=False))
            ]
        try:
            refit_prep = FeaturePrep.fit(everything, config)
            if champion == SURVIVAL_MODEL:
                refit = SurvivalChurnModel(config).fit(
                    refit_prep.survival_matrix(everything),
                    everything["duration_days"].to_numpy(),
                    everything["purchased"].to_numpy(),
                )
            else:
                refit = ClassifierChurnModel(config).fit(
                    refit_prep.classifier_matrix(everything), everything["churned"].to_numpy()
                )
            fitted[champion], score_prep = refit, refit_prep
            reports[champion].n_training_rows = len(everything)
            reports[champion].parameters["refit_on_snapshots"] = len(complete)
        except Exception as exc:  # the validated model still scores; say why it was not refreshed
            reports[champion].parameters["refit_failed"] = f"{type(exc).__name__}: {exc}"
    if SURVIVAL_MODEL in fitted:
        reports[SURVIVAL_MODEL].drivers = fitted[SURVIVAL_MODEL].drivers()

    for report in reports.values():
        report.parameters |= _parameters(config, report.name, prep if report.name != champion else score_prep)
    result.models = list(reports.values())
    result.scores = _score(current, fitted, champion, prep, score_prep, config, as_of_ts)
    result.message = (
        f"{champion} champion (holdout log-loss {reports[champion].metrics['log_loss']:.4f}, "
        f"AUC {reports[champion].metrics['auc']:.3f}) on {scheme}; scored {len(result.scores)} customers."
    )
    return result


def _too_few_of_a_class(labels: pd.Series) -> bool:
    """Soft labels that add up to almost no churner (or almost no survivor): an AUC or a
    log-loss over them says nothing, e.g. when a small shop's BG/NBD fit sees no dropout."""
    churned = float(labels.sum())
    return churned < MIN_EXPECTED_PER_CLASS or len(labels) - churned < MIN_EXPECTED_PER_CLASS


def _score(current, fitted, champion, prep, score_prep, config, as_of_ts) -> pd.DataFrame:
    if current.empty:
        return empty_scores()
    columns = {}
    for name, model in fitted.items():
        used_prep = score_prep if name == champion else prep
        matrix = (
            used_prep.survival_matrix(current)
            if name == SURVIVAL_MODEL
            else used_prep.classifier_matrix(current)
        )
        columns[name] = model.predict(matrix)
    n = len(current)
    probability = columns[champion]
    return pd.DataFrame(
        {
            "customer_key": current["customer_key"].to_numpy(),
            "snapshot_date": np.full(n, as_of_ts.to_datetime64()),
            "churn_probability": probability,
            "risk_tier": config.tier_of(probability),
            "survival_churn_probability": columns.get(SURVIVAL_MODEL, np.full(n, np.nan)),
            "classifier_churn_probability": columns.get(CLASSIFIER_MODEL, np.full(n, np.nan)),
            "champion_model": champion,
            "horizon_days": config.horizon_days,
        }
    )


def _parameters(config: ChurnConfig, name: str, prep: FeaturePrep) -> dict:
    common = {
        "horizon_days": config.horizon_days,
        "features": prep.columns,
        "config_version": config.declared_version,
        "max_rows": config.max_rows,
    }
    if name == SURVIVAL_MODEL:
        return common | {"survival_model": config.survival_model, "penalizer": config.penalizer}
    return common | {
        "max_iter": config.max_iter,
        "learning_rate": config.learning_rate,
        "max_leaf_nodes": config.max_leaf_nodes,
        "calibration": config.calibration,
        "calibration_folds": config.calibration_folds,
    }
