"""Simulation from BG/NBD and Gamma-Gamma (parameter-recovery tests, benchmarks, synthetic data)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from segmentation_platform.core.models.clv._bgnbd import BGNBDParams
from segmentation_platform.core.models.clv._gamma_gamma import GammaGammaParams
from segmentation_platform.core.models.clv._summary import _days_per_unit

# --------------------------------------------------------------------------------------------
# Simulation (parameter-recovery tests, benchmarks, synthetic data)
# --------------------------------------------------------------------------------------------


def _simulate_repeat_purchases(
    params: BGNBDParams, T: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(customer index, time since first purchase) of every repeat purchase up to T.

    Vectorised over customers, one round per purchase: each active customer draws the next
    exponential gap, and after each repeat purchase drops out with probability p.
    """
    n = len(T)
    rate = rng.gamma(params.r, 1.0 / params.alpha, size=n)
    dropout = rng.beta(params.a, params.b, size=n)
    clock = np.zeros(n)
    active = np.flatnonzero(rate > 0)
    customers, times = [], []
    while active.size:
        clock[active] += rng.exponential(1.0 / rate[active])
        active = active[clock[active] <= T[active]]
        customers.append(active)
        times.append(clock[active].copy())
        active = active[rng.random(active.size) >= dropout[active]]
    if not customers:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(customers), np.concatenate(times)


def simulate_bgnbd(n_customers: int, params: BGNBDParams, T: Any, seed: int = 0) -> pl.DataFrame:
    """Draw (frequency, recency, T) for a BG/NBD population in continuous time.

    ``T`` is a scalar or one observation length per customer, in the unit alpha is expressed in.
    """
    rng = np.random.default_rng(seed)
    age = np.broadcast_to(np.asarray(T, dtype=float), (n_customers,)).copy()
    customer, time = _simulate_repeat_purchases(params, age, rng)
    frequency = np.bincount(customer, minlength=n_customers)
    recency = np.zeros(n_customers)
    recency[customer] = time  # rounds are in time order, so the last write is the last purchase
    return pl.DataFrame({"frequency": frequency, "recency": recency, "T": age})


def simulate_gamma_gamma(frequency: Any, params: GammaGammaParams, seed: int = 0) -> np.ndarray:
    """Mean spend over each customer's x repeat purchases (NaN when x = 0)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(frequency, dtype=float)
    nu = rng.gamma(params.q, 1.0 / params.gamma, size=len(x))
    # The mean of x Gamma(p, rate nu) draws is Gamma(p x, rate x nu).
    with np.errstate(divide="ignore", invalid="ignore"):
        means = rng.gamma(np.where(x > 0, params.p * x, 1.0), 1.0 / np.where(x > 0, x * nu, 1.0))
    return np.where(x > 0, means, np.nan)


def simulate_transaction_log(
    n_customers: int,
    bgnbd: BGNBDParams,
    gamma_gamma: GammaGammaParams,
    *,
    start: dt.date,
    end: dt.date,
    time_unit: str = "days",
    seed: int = 0,
) -> pl.DataFrame:
    """A transaction log (customer_key, ordered_at, amount) from BG/NBD + Gamma-Gamma customers.

    First purchases are uniform over [start, end); every order's amount is Gamma(p, nu_i).
    Summarising at ``end`` recovers the parameters up to same-day merging of orders.
    """
    rng = np.random.default_rng(seed)
    unit_us = _days_per_unit(time_unit) * 86_400e6
    window_us = (end - start).days * 86_400e6
    first_us = rng.random(n_customers) * window_us
    age = (window_us - first_us) / unit_us
    customer, time = _simulate_repeat_purchases(bgnbd, age, rng)
    customer = np.concatenate([np.arange(n_customers), customer])
    offset_us = np.concatenate([first_us, first_us[customer[n_customers:]] + time * unit_us])
    nu = rng.gamma(gamma_gamma.q, 1.0 / gamma_gamma.gamma, size=n_customers)
    amount = np.maximum(np.round(rng.gamma(gamma_gamma.p, 1.0 / nu[customer]), 2), 0.01)
    start_us = np.datetime64(start, "us")
    return pl.DataFrame(
        {
            "customer_key": customer.astype(np.int64),
            "ordered_at": start_us + offset_us.astype(np.int64).astype("timedelta64[us]"),
            "amount": amount,
        }
    )
