"""The two competing estimators (lifelines survival, calibrated gradient boosting), their feature preparation and holdout evaluation."""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segmentation_platform.core.models.churn._config import PROBABILITY_CLIP, ChurnConfig
from segmentation_platform.core.models.churn._labels import _RATE, _SHAPE, as_weighted

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
