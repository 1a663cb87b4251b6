"""One-call CLV: fit both models on a summary and score every customer's discounted CLTV."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from segmentation_platform.core.models.clv._bgnbd import (
    BGNBDFit,
    _discounted_purchases_if_alive,
    _expected_purchases_if_alive,
    fit_bgnbd,
    probability_alive,
)
from segmentation_platform.core.models.clv._gamma_gamma import (
    GammaGammaFit,
    expected_value_per_order,
    fit_gamma_gamma,
)
from segmentation_platform.core.models.clv._likelihood import UnidentifiedModel
from segmentation_platform.core.models.clv._summary import (
    DAYS_PER_MONTH,
    SUMMARY_COLUMNS,
    _as_lazy_polars,
    _days_per_unit,
)


@dataclass(frozen=True)
class CLVResult:
    """Scores keyed by customer plus the fits and settings that produced them."""

    scores: pl.DataFrame
    bgnbd: BGNBDFit
    gamma_gamma: GammaGammaFit
    value_col: str
    horizon_months: int
    annual_discount_rate: float


# --------------------------------------------------------------------------------------------
# One-call fit and scoring
# --------------------------------------------------------------------------------------------


def score_customers(
    summary: pl.DataFrame,
    bgnbd: BGNBDFit,
    gamma_gamma: GammaGammaFit,
    *,
    customer_col: str = "customer_key",
    value_col: str = "margin_value",
    horizon_months: int = 12,
    annual_discount_rate: float = 0.10,
) -> pl.DataFrame:
    """Score every customer of a ``transaction_summary`` with already-fitted models.

    Returns customer_col, frequency, recency, T, p_alive, expected_purchases (over the horizon),
    expected_value_per_order (of value_col) and cltv = discounted expected purchases x value.
    A repeat customer with a negative mean margin keeps a (shrunk) negative value per order, so
    their cltv is negative. Computation runs once per distinct (x, t_x, T) pattern.
    """
    summary = _as_lazy_polars(summary).collect()
    params, unit = bgnbd.params, bgnbd.time_unit
    horizon = horizon_months * DAYS_PER_MONTH / _days_per_unit(unit)
    # The hypergeometric terms depend on (x, T) only: compute them once per distinct pair.
    pairs = summary.select("frequency", "T").unique(maintain_order=True)
    x, age = (pairs[c].to_numpy().astype(float) for c in ("frequency", "T"))
    pairs = pairs.with_columns(
        _purchases_if_alive=_expected_purchases_if_alive(params, horizon, x, age),
        _discounted_if_alive=_discounted_purchases_if_alive(
            params, x, age, unit, horizon_months, annual_discount_rate
        ),
    )
    patterns = summary.select(SUMMARY_COLUMNS).unique(maintain_order=True)
    x, t_x, age = (patterns[c].to_numpy().astype(float) for c in SUMMARY_COLUMNS)
    patterns = (
        patterns.with_columns(p_alive=probability_alive(params, x, t_x, age))
        .join(pairs, on=["frequency", "T"], how="left")
        .select(
            *SUMMARY_COLUMNS,
            "p_alive",
            (pl.col("p_alive") * pl.col("_purchases_if_alive")).alias("expected_purchases"),
            (pl.col("p_alive") * pl.col("_discounted_if_alive")).alias("_discounted_purchases"),
        )
    )
    scored = summary.select(customer_col, *SUMMARY_COLUMNS, value_col).join(
        patterns, on=list(SUMMARY_COLUMNS), how="left", maintain_order="left"
    )
    value = expected_value_per_order(
        gamma_gamma.params, scored["frequency"].to_numpy(), scored[value_col].to_numpy()
    )
    return scored.select(
        customer_col,
        *SUMMARY_COLUMNS,
        "p_alive",
        "expected_purchases",
        pl.Series("expected_value_per_order", value),
        (pl.col("_discounted_purchases") * pl.Series(value)).alias("cltv"),
    )


def fit_clv(
    summary: pl.DataFrame,
    *,
    customer_col: str = "customer_key",
    value_col: str | None = None,
    time_unit: str = "days",
    horizon_months: int = 12,
    annual_discount_rate: float = 0.10,
    penalizer: float = 0.0,
) -> CLVResult:
    """Fit BG/NBD on all customers and Gamma-Gamma on repeat customers, then score everyone.

    ``value_col`` defaults to margin_value when the summary has it (CLTV in margin), else
    monetary_value (CLTV in revenue). ``time_unit`` must be the one the summary was built with.
    Customers with a non-positive mean value are left out of the Gamma-Gamma fit but scored.
    Raises UnidentifiedModel when a fit does not converge rather than scoring with meaningless params.
    ``penalizer`` goes to both fits (see fit_bgnbd).
    """
    summary = _as_lazy_polars(summary).collect()
    if value_col is None:
        value_col = "margin_value" if "margin_value" in summary.columns else "monetary_value"
    if value_col not in summary.columns:
        raise ValueError(
            f"summary has no {value_col!r} column; pass amount_col/margin_col to transaction_summary"
        )
    bgnbd = fit_bgnbd(
        summary["frequency"], summary["recency"], summary["T"], time_unit=time_unit, penalizer=penalizer
    )
    repeaters = summary.filter((pl.col("frequency") > 0) & (pl.col(value_col) > 0))
    if repeaters.height == 0:
        raise UnidentifiedModel("no repeat customers with positive value to fit the Gamma-Gamma model")
    gamma_gamma = fit_gamma_gamma(repeaters["frequency"], repeaters[value_col], penalizer=penalizer)
    for name, fit in (("BG/NBD", bgnbd), ("Gamma-Gamma", gamma_gamma)):
        if not fit.converged:
            raise UnidentifiedModel(f"{name} fit failed: {fit.message}")
    scores = score_customers(
        summary,
        bgnbd,
        gamma_gamma,
        customer_col=customer_col,
        value_col=value_col,
        horizon_months=horizon_months,
        annual_discount_rate=annual_discount_rate,
    )
    return CLVResult(
        scores=scores,
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        value_col=value_col,
        horizon_months=horizon_months,
        annual_discount_rate=annual_discount_rate,
    )


# --------------------------------------------------------------------------------------------
