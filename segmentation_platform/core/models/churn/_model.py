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
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from segmentation_platform.core.models.churn._config import CLASSIFIER_MODEL, SURVIVAL_MODEL, ChurnConfig
from segmentation_platform.core.models.churn._estimators import (
    ClassifierChurnModel,
    FeaturePrep,
    SurvivalChurnModel,
    evaluate,
)
from segmentation_platform.core.models.churn._labels import (
    MIN_EXPECTED_PER_CLASS,
    _day,
    add_signals,
    complete_snapshots,
    label_snapshots,
    purchases_before,
)
from segmentation_platform.core.models.churn._tables import CHURN_DRIVERS_SCHEMA, CHURN_SCORES_SCHEMA
from segmentation_platform.core.models.registry import ModelRecord

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
            return pd.DataFrame({name: [] for name in CHURN_DRIVERS_SCHEMA.names})
        return pd.concat(frames, ignore_index=True)[CHURN_DRIVERS_SCHEMA.names]

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
    return pd.DataFrame(
        {name: pd.Series(dtype=_pandas_dtype(t)) for name, t in CHURN_SCORES_SCHEMA.sql_columns.items()}
    )


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
