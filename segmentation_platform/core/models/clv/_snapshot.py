"""CLTV for one weekly snapshot: fit, score, and validate against a holdout window.

The models live in `core.clv`; this module decides what a snapshot feeds them (orders
before 00:00 on the snapshot date, margin or revenue per order) and how a fit is judged
(calibration period up to T - H, holdout (T - H, T]).
"""

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from segmentation_platform.core.config import CONFIG_DIR, read_config
from segmentation_platform.core.models._history import InsufficientHistory
from segmentation_platform.core.models.clv._bgnbd import expected_purchases
from segmentation_platform.core.models.clv._clv import CLVResult, fit_clv
from segmentation_platform.core.models.clv._likelihood import UnidentifiedModel
from segmentation_platform.core.models.clv._summary import transaction_summary

CONFIG_PATH = CONFIG_DIR / "clv.yaml"


@dataclass(frozen=True)
class ClvConfig:
    version: int
    value: str
    horizon_months: int
    annual_discount_rate: float
    holdout_days: int
    min_repeat_customers: int
    penalizer: float


def load_clv_config(path: Path | str = CONFIG_PATH) -> ClvConfig:
    fields = (
        "version",
        "value",
        "horizon_months",
        "annual_discount_rate",
        "holdout_days",
        "min_repeat_customers",
        "penalizer",
    )
    config = read_config(path).only(fields, required=fields)
    return ClvConfig(
        version=config.number("version", low=1, integer=True),
        value=config.choice("value", ("margin", "revenue")),
        horizon_months=config.number("horizon_months", low=1, high=120, integer=True),
        annual_discount_rate=float(config.number("annual_discount_rate", low=0, high=1)),
        holdout_days=config.number("holdout_days", low=7, high=365, integer=True),
        min_repeat_customers=config.number("min_repeat_customers", low=1, integer=True),
        penalizer=float(config.number("penalizer", low=0, high=100)),
    )


def _fit(summary: pl.DataFrame, config: ClvConfig, value_col: str, **kwargs) -> CLVResult:
    """Refuse to fit on too little history: a handful of repeat buyers gives degenerate parameters.

    Raises `InsufficientHistory` (a state the asset records, not an error); anything else is a bug."""
    repeaters = summary.filter(pl.col("frequency") > 0).height
    if repeaters < config.min_repeat_customers:
        raise InsufficientHistory(
            "clv",
            f"only {repeaters} repeat customers before the snapshot (min_repeat_customers = "
            f"{config.min_repeat_customers}): too little history to fit",
        )
    try:
        result = fit_clv(summary, value_col=value_col, penalizer=config.penalizer, **kwargs)
    except UnidentifiedModel as error:
        raise InsufficientHistory("clv", f"{error}: too little history to fit") from error
    if (
        not (result.bgnbd.converged and result.gamma_gamma.converged)
        or not result.scores["cltv"].is_finite().all()
    ):
        raise InsufficientHistory(
            "clv",
            f"degenerate fit on {repeaters} repeat customers (BG/NBD: {result.bgnbd.message}; "
            f"Gamma-Gamma: {result.gamma_gamma.message}): too little history to fit",
        )
    return result


def _summary(orders: pl.DataFrame, last_day: date, use_margin: bool) -> pl.DataFrame:
    frame = orders.filter(
        pl.col("purchased_at") < pl.lit(last_day + timedelta(days=1)).cast(pl.Datetime("us"))
    )
    frame = frame.with_columns((pl.col("amount") - pl.col("cost")).alias("margin"))
    return transaction_summary(
        frame,
        last_day,
        time_col="purchased_at",
        amount_col="amount",
        margin_col="margin" if use_margin else None,
    )


def uses_margin(orders: pl.DataFrame, config: ClvConfig) -> bool:
    return config.value == "margin" and orders["cost"].is_not_null().any()


def score_snapshot(orders: pl.DataFrame, snapshot_date: date, config: ClvConfig) -> CLVResult:
    """Fit on every order before the snapshot and score each customer who has bought."""
    use_margin = uses_margin(orders, config)
    summary = _summary(orders, snapshot_date - timedelta(days=1), use_margin)
    return _fit(
        summary,
        config,
        "margin_value" if use_margin else "monetary_value",
        horizon_months=config.horizon_months,
        annual_discount_rate=config.annual_discount_rate,
    )


@dataclass
class Calibration:
    metrics: dict
    deciles: pl.DataFrame


def calibrate(orders: pl.DataFrame, snapshot_date: date, config: ClvConfig) -> Calibration:
    """Fit up to T - H, predict purchases in (T - H, T], compare with what happened.

    Only customers who had bought by T - H are judged (the model knows nobody else).
    Purchases count distinct purchase days, as the model does.
    """
    from scipy.stats import spearmanr  # a second of import time the code location need not pay

    cut = snapshot_date - timedelta(days=config.holdout_days)
    use_margin = uses_margin(orders, config)
    calibration = _summary(orders, cut - timedelta(days=1), use_margin)
    value_col = "margin_value" if use_margin else "monetary_value"
    fit = _fit(calibration, config, value_col, horizon_months=1, annual_discount_rate=0.0)
    predicted = expected_purchases(
        fit.bgnbd.params,
        config.holdout_days,
        calibration["frequency"].to_numpy(),
        calibration["recency"].to_numpy(),
        calibration["T"].to_numpy(),
    )
    value_per_order = fit.scores["expected_value_per_order"].to_numpy()
    holdout = (
        orders.filter(
            (pl.col("purchased_at") >= pl.lit(cut).cast(pl.Datetime("us")))
            & (pl.col("purchased_at") < pl.lit(snapshot_date).cast(pl.Datetime("us")))
        )
        .group_by("customer_key")
        .agg(
            pl.col("purchased_at").dt.date().n_unique().alias("actual_purchases"),
            pl.col("amount").sum().alias("actual_revenue"),
        )
    )
    judged = (
        calibration.select("customer_key")
        .with_columns(
            pl.Series("predicted_purchases", predicted),
            pl.Series("predicted_value", predicted * np.nan_to_num(value_per_order)),
        )
        .join(holdout, on="customer_key", how="left")
        .with_columns(pl.col("actual_purchases", "actual_revenue").fill_null(0))
    )
    actual_total = float(judged["actual_purchases"].sum())
    predicted_total = float(judged["predicted_purchases"].sum())
    rho = spearmanr(judged["predicted_purchases"], judged["actual_purchases"]).statistic
    deciles = (
        judged.with_columns(
            (pl.col("predicted_purchases").rank("ordinal", descending=True) * 10 / judged.height)
            .ceil()
            .cast(pl.Int32)
            .clip(1, 10)
            .alias("decile")
        )
        .group_by("decile")
        .agg(
            pl.len().alias("customers"),
            pl.col("predicted_purchases").mean().alias("predicted_purchases_mean"),
            pl.col("actual_purchases").mean().alias("actual_purchases_mean"),
            pl.col("actual_revenue").mean().alias("actual_revenue_mean"),
        )
        .sort("decile")
    )
    metrics = {
        "calibration_end": (cut - timedelta(days=1)).isoformat(),
        "holdout_days": config.holdout_days,
        "customers": judged.height,
        "predicted_purchases": round(predicted_total, 1),
        "actual_purchases": actual_total,
        "aggregate_error_pct": round(100 * (predicted_total - actual_total) / actual_total, 2)
        if actual_total
        else None,
        "mae_per_customer": float((judged["predicted_purchases"] - judged["actual_purchases"]).abs().mean()),
        "spearman_rho": float(rho),
        "bgnbd": fit.bgnbd.params.__dict__,
    }
    return Calibration(metrics=metrics, deciles=deciles)
