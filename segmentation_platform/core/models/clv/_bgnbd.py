"""Customer lifetime value: BG/NBD purchase model + Gamma-Gamma spend model.

Pure computation (numpy, scipy, polars); usable from a notebook or from the Dagster assets.

Notation follows Fader, Hardie & Lee: for each customer, at a snapshot date,

- ``frequency`` (x): number of *repeat* purchase days. Orders on the same calendar day count
  once, and the first purchase day is not counted (as in the ``lifetimes`` package).
- ``recency`` (t_x): time from the first to the last purchase day.
- ``T``: time from the first purchase day to the snapshot day.
- ``monetary_value`` / ``margin_value``: mean spend / margin per repeat purchase day
  (the first purchase day is excluded; null when x = 0).

Time unit: recency and T are measured in ``time_unit`` ("days" or "weeks"; one week is 7 days,
so weeks are fractional, as in the CDNOW data). The fitted BG/NBD ``alpha`` is in that unit:
the published CDNOW parameters (r=0.243, alpha=4.414, a=0.793, b=2.426) are in weeks. A fit
remembers its unit and converts horizons given in months (1 month = 365.25/12 days).

Speed (1M customers / 3M orders in well under a second on 2 CPUs): the summary is one integer
sort by (customer, day) and run-length sums; the BG/NBD likelihood runs on distinct
(x, t_x, T) rows weighted by their count, with x-only terms computed once per distinct x, an
analytic gradient and Hessian, per-row terms split over threads, and Newton's method started
from a fit on a 50k-customer subsample.

Reproducibility: every sum runs in a fixed order (row order, or sorted patterns), so refitting
the same orders gives the same parameters and scores to the last bit.

Typical use::

    summary = transaction_summary(orders, snapshot_date="2024-06-30", margin_col="margin")
    result = fit_clv(summary, horizon_months=12, annual_discount_rate=0.10)
    result.scores  # customer_key, p_alive, expected_purchases, expected_value_per_order, cltv

References: Fader, Hardie & Lee (2005) "Counting Your Customers the Easy Way: An Alternative
to the Pareto/NBD Model", Marketing Science 24(2); Fader, Hardie & Lee (2005) "RFM and CLV:
Using Iso-Value Curves for Customer Base Analysis", JMR 42(4); Fader & Hardie (2013) note
"The Gamma-Gamma Model of Monetary Value".
"""

from __future__ import annotations

import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1, polygamma

__all__ = [
    "BGNBDFit",
    "BGNBDParams",
    "CLVResult",
    "DAYS_PER_MONTH",
    "DAYS_PER_UNIT",
    "GammaGammaFit",
    "GammaGammaParams",
    "bgnbd_log_likelihood",
    "discounted_expected_purchases",
    "expected_purchases",
    "expected_value_per_order",
    "fit_bgnbd",
    "fit_clv",
    "fit_gamma_gamma",
    "probability_alive",
    "score_customers",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_transaction_log",
    "transaction_summary",
]

DAYS_PER_UNIT = {"days": 1.0, "weeks": 7.0}
DAYS_PER_MONTH = 365.25 / 12
SUMMARY_COLUMNS = ("frequency", "recency", "T")

_LOG_PARAM_BOUNDS = (-30.0, 30.0)  # keeps exp() finite in the L-BFGS-B fallback
# Fits run in rescaled units (largest T = 10, mean value = 1), where a parameter beyond e^+-15
# means the likelihood keeps improving towards 0 or infinity: the data do not identify the model.
_DEGENERATE_LOG_PARAM = 15.0


# --------------------------------------------------------------------------------------------
# Parameters and fit results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BGNBDParams:
    """Purchase rate ~ Gamma(shape r, rate alpha); dropout after each repeat purchase ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per order ~ Gamma(p, nu), nu ~ Gamma(q, gamma); mean spend = p * gamma / (q - 1)."""

    p: float
    q: float
    gamma: float

    @property
    def population_mean(self) -> float:
        """Expected spend per order of a customer we know nothing about (needs q > 1)."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1.0 else float("inf")


@dataclass(frozen=True)
class BGNBDFit:
    """A BG/NBD fit; ``time_unit`` is the unit of recency, T and 1/alpha."""

    params: BGNBDParams
    log_likelihood: float  # total over customers, in the fitted time unit
    n_customers: int
    n_unique_rows: int  # distinct (x, t_x, T) patterns the likelihood was evaluated on
    converged: bool
    iterations: int
    message: str
    time_unit: str


@dataclass(frozen=True)
class GammaGammaFit:
    """A Gamma-Gamma fit on repeat customers; gamma is in the currency of the fitted values."""

    params: GammaGammaParams
    log_likelihood: float
    n_customers: int
    converged: bool
    iterations: int
    message: str


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
# Transaction log -> (x, t_x, T, mean repeat value)
# --------------------------------------------------------------------------------------------


def transaction_summary(
    transactions: Any,
    snapshot_date: dt.date | dt.datetime | str,
    *,
    customer_col: str = "customer_key",
    time_col: str = "ordered_at",
    amount_col: str | None = "amount",
    margin_col: str | None = None,
    time_unit: str = "days",
) -> pl.DataFrame:
    """Per-customer BG/NBD inputs as of the end of ``snapshot_date`` (inclusive, by calendar day).

    Accepts a pandas or polars (lazy) frame; returns a polars DataFrame sorted by customer with
    columns customer_col, frequency, recency, T, first_purchase_date, last_purchase_date and,
    when the columns are given, monetary_value / margin_value (null when frequency is 0).
    Rows with a null customer or timestamp (anonymous receipts) are dropped; later
    transactions are ignored, so the same log can be summarised at any past snapshot.

    One sort by (customer, day) and run-length sums instead of two hash group-bys (several
    times faster at 3M orders, and the output comes sorted).
    """
    days_per_unit = _days_per_unit(time_unit)
    snapshot_day = (_to_date(snapshot_date) - _EPOCH).days
    frame = _as_lazy_polars(transactions)
    schema = frame.collect_schema()

    value_cols = {"monetary_value": amount_col, "margin_value": margin_col}
    value_cols = {name: col for name, col in value_cols.items() if col is not None}
    rows = (
        frame.select(
            pl.col(customer_col),
            _as_day(pl.col(time_col), schema[time_col]).cast(pl.Int32).alias("_day"),
            # A missing amount adds nothing to its day (as in a SQL or polars sum).
            *[pl.col(col).cast(pl.Float64).fill_null(0.0).alias(n) for n, col in value_cols.items()],
        )
        .filter(pl.col(customer_col).is_not_null() & (pl.col("_day") <= snapshot_day))
        .collect()
    )
    order, day, new_customer = _sort_by_customer_and_day(rows, customer_col)
    new_day = new_customer.copy()
    new_day[1:] |= day[1:] != day[:-1]
    day_starts = np.flatnonzero(new_day)
    day_index = np.cumsum(new_day) - 1  # purchase day of each sorted row
    # Among purchase days: where each customer's first day sits, and which customer each day is.
    first_of_customer = new_customer[day_starts]
    firsts = np.flatnonzero(first_of_customer)
    customer_index = np.cumsum(first_of_customer) - 1
    n_days = np.diff(np.append(firsts, len(day_starts)))
    purchase_day = day[day_starts]
    first_day = purchase_day[firsts]
    last_day = purchase_day[firsts + n_days - 1]
    frequency = n_days - 1
    repeat = frequency > 0

    columns: dict[str, Any] = {
        customer_col: rows[customer_col].gather(order[day_starts[firsts]]),
        "frequency": pl.Series(frequency, dtype=pl.Int64),
        "recency": (last_day - first_day) / days_per_unit,
        "T": (snapshot_day - first_day) / days_per_unit,
    }
    for name in value_cols:
        # bincount adds weights in row order: the same rows in the same order give the same bits.
        per_day = np.bincount(day_index, weights=rows[name].to_numpy()[order], minlength=len(day_starts))
        per_day[firsts] = 0.0  # the first purchase day is not a repeat purchase
        repeat_total = np.bincount(customer_index, weights=per_day, minlength=len(firsts))
        columns[name] = np.divide(repeat_total, frequency, out=np.zeros(len(firsts)), where=repeat)
    columns["first_purchase_date"] = pl.Series(first_day, dtype=pl.Int32).cast(pl.Date)
    columns["last_purchase_date"] = pl.Series(last_day, dtype=pl.Int32).cast(pl.Date)
    return pl.DataFrame(columns).with_columns(
        pl.col("recency", "T").cast(pl.Float64),
        *[pl.when(pl.col("frequency") > 0).then(pl.col(name)).alias(name) for name in value_cols],
    )


_EPOCH = dt.date(1970, 1, 1)


def _sort_by_customer_and_day(rows: pl.DataFrame, customer_col: str) -> tuple[np.ndarray, ...]:
    """Row positions sorted by (customer, day) with ties in input order, the sorted days, and
    a flag on each customer's first sorted row.

    Integer customer keys are packed with the day and the row position into one unique int64:
    numpy's (SIMD) sort of plain integers is ~10x faster than a stable argsort.
    """
    n = rows.height
    if n and rows.schema[customer_col].is_integer():
        customer, day = rows[customer_col].to_numpy(), rows["_day"].to_numpy()
        low_customer, low_day = customer.min(), int(day.min())
        day_bits = (int(day.max()) - low_day).bit_length()
        position_bits = (n - 1).bit_length()
        if (int(customer.max()) - int(low_customer)).bit_length() + day_bits + position_bits <= 63:
            key = (customer - low_customer).astype(np.int64) << (day_bits + position_bits)
            key |= (day.astype(np.int64) - low_day) << position_bits
            key |= np.arange(n, dtype=np.int64)
            key.sort()
            order = key & ((1 << position_bits) - 1)
            key >>= position_bits
            new_customer = np.ones(n, dtype=bool)
            new_customer[1:] = (key[1:] >> day_bits) != (key[:-1] >> day_bits)
            return order, (key & ((1 << day_bits) - 1)).astype(np.int32) + low_day, new_customer
    order = rows.select(pl.arg_sort_by(customer_col, "_day", maintain_order=True)).to_series().to_numpy()
    customers = rows[customer_col].gather(order)
    new_customer = np.ones(n, dtype=bool)
    if n > 1:
        new_customer[1:] = (customers.slice(1) != customers.slice(0, n - 1)).to_numpy()
    return order, rows["_day"].to_numpy()[order], new_customer


def _as_lazy_polars(frame: Any) -> pl.LazyFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    return pl.from_pandas(frame).lazy()


def _as_day(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Date:
        return expr
    if dtype == pl.String:
        return expr.str.to_datetime().dt.date()
    return expr.dt.date()  # local calendar day for tz-aware timestamps


def _to_date(value: dt.date | dt.datetime | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.datetime.fromisoformat(str(value)).date()


def _days_per_unit(time_unit: str) -> float:
    try:
        return DAYS_PER_UNIT[time_unit]
    except KeyError:
        raise ValueError(f"time_unit must be one of {sorted(DAYS_PER_UNIT)}, got {time_unit!r}") from None


# --------------------------------------------------------------------------------------------
# Data compression: the likelihood only depends on distinct patterns
# --------------------------------------------------------------------------------------------


def _compress(columns: dict[str, np.ndarray], w: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Collapse identical rows into one with summed weight; customers share few distinct patterns.

    Patterns come out sorted, so the same rows in any order give bit-identical sums and fits.
    """
    packed = _pack_on_day_grid(columns)
    if packed is None:
        grouped = pl.DataFrame({**columns, "_w": w}).group_by(list(columns)).agg(pl.col("_w").sum())
        grouped = grouped.sort(list(columns))
        return {name: grouped[name].to_numpy() for name in columns}, grouped["_w"].to_numpy()
    key, unpack = packed
    unit_weights = bool(np.all(w == 1.0))
    if unit_weights:
        key = np.sort(key)  # a plain integer sort is ~10x faster than a hash group-by here
    else:
        order = np.argsort(key, kind="stable")
        key, w = key[order], w[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    if unit_weights:
        weights = np.diff(np.append(starts, len(key))).astype(float)
    else:
        weights = np.bincount(np.cumsum(first) - 1, weights=w, minlength=len(starts))
    return unpack(key[starts]), weights


_PACK_BITS = 21  # per column: three columns in one int64 key


def _pack_on_day_grid(columns: dict[str, np.ndarray]):
    """One int64 key per row when every column is a whole number of days, in days or weeks, as
    transaction_summary makes them (up to float rounding, 1e-12): one integer sorts fast."""
    if len(columns) * _PACK_BITS > 63:
        return None
    codes, grids = [], []
    for values in columns.values():
        for grid in sorted(set(DAYS_PER_UNIT.values())):
            code = np.round(values * grid)
            error = code / grid - values
            np.abs(error, out=error)
            on_grid = bool(np.all(error <= 1e-12 * np.abs(values)))
            if on_grid and code.min() >= 0 and code.max() < 2**_PACK_BITS:
                codes.append(code.astype(np.int64))
                grids.append(grid)
                break
        else:
            return None
    key = codes[0]
    for code in codes[1:]:
        key = (key << _PACK_BITS) | code

    def unpack(keys: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for position, (name, grid) in enumerate(zip(reversed(columns), reversed(grids), strict=True)):
            out[name] = ((keys >> (_PACK_BITS * position)) & (2**_PACK_BITS - 1)) / grid
        return {name: out[name] for name in columns}

    return key, unpack


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product without BLAS: OpenBLAS threads slow it down by 10-50x when cores are busy."""
    return float(np.einsum("i,i->", a, b))


def _weight_by_count(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct purchase counts and their total weight (bincount: counts are small integers)."""
    counts = x.astype(np.int64)
    present = np.bincount(counts) > 0
    return np.flatnonzero(present).astype(float), np.bincount(counts, weights=w)[present]


def _validated_weights(weights: Any | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _as_float_array(weights, "weights")
    if len(w) != n or np.any(w < 0):
        raise ValueError("weights must be non-negative, one per row")
    return w


def _as_float_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


# --------------------------------------------------------------------------------------------
# Maximum likelihood on log-parameters
# --------------------------------------------------------------------------------------------

_WARM_START_CUSTOMERS = 50_000  # larger data sets start Newton from a fit on a subsample
_STEP_TOLERANCE = 1e-4  # Newton stops below this log-parameter step; the error left is ~step^2/2 <= 1e-8
_MAX_STEP = 5.0  # largest move of a log-parameter in one Newton iteration (a factor of e^5)


class _MeanNegativeLogLikelihood:
    """(-ll + penalizer |u|^2) / n on log-parameters u; value, gradient and Hessian come from one
    (cached) evaluation."""

    def __init__(self, likelihood: Any, penalizer: float = 0.0):
        self.likelihood = likelihood
        self.total_weight = likelihood.total_weight
        self.penalizer = penalizer
        self._at: np.ndarray | None = None

    def penalty(self, log_params: np.ndarray) -> float:
        return self.penalizer * float(log_params @ log_params)

    def __call__(self, log_params: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        if self._at is None or not np.array_equal(log_params, self._at):
            params = np.exp(log_params)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                ll, grad, hess = self.likelihood.evaluate(*params, hessian=True)
            # Chain rule for theta = exp(u): d/du = theta d/dtheta.
            hess_u = np.outer(params, params) * hess + np.diag(params * grad)
            value = (self.penalty(log_params) - ll) / self.total_weight
            ridge = 2.0 * self.penalizer / self.total_weight
            self._result = (
                value if np.isfinite(value) else np.inf,
                -grad * params / self.total_weight + ridge * log_params,
                -hess_u / self.total_weight + ridge * np.eye(len(params)),
            )
            self._at = log_params.copy()
        return self._result


@dataclass(frozen=True)
class _Solution:
    log_params: np.ndarray
    value: float  # mean negative log-likelihood at log_params
    max_gradient: float  # at the last evaluated point
    converged: bool
    iterations: int
    method: str
    message: str


def _newton(objective: _MeanNegativeLogLikelihood, start: np.ndarray, max_iterations: int = 100) -> _Solution:
    """Newton's method with exact Hessian and backtracking line search.

    Indefinite Hessians (far from the optimum) are made positive definite by flipping negative
    eigenvalues, so every step goes downhill. Near the optimum convergence is quadratic: from a
    warm start the full data costs about three evaluations.
    """
    u = start.astype(float).copy()
    for iteration in range(1, max_iterations + 1):
        value, grad, hess = objective(u)
        if not (np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
            return _Solution(u, value, np.inf, False, iteration, "Newton", "non-finite likelihood")
        eigenvalues, eigenvectors = np.linalg.eigh(hess)
        positive_definite = eigenvalues.min() > 0
        curvature = np.maximum(np.abs(eigenvalues), 1e-10)
        step = -eigenvectors @ ((eigenvectors.T @ grad) / curvature)
        max_gradient = float(np.max(np.abs(grad)))
        if positive_definite and np.max(np.abs(step)) < _STEP_TOLERANCE:
            # Quadratic model: the value after the final step is value + grad.step / 2.
            return _Solution(
                u + step,
                value + 0.5 * grad @ step,
                max_gradient,
                True,
                iteration,
                "Newton",
                "step below tolerance",
            )
        step *= min(1.0, _MAX_STEP / np.max(np.abs(step)))
        slope = grad @ step
        length = 1.0
        while objective(u + length * step)[0] > value + 1e-4 * length * slope:
            length *= 0.5
            if length < 1e-10:
                return _Solution(u, value, max_gradient, False, iteration, "Newton", "line search failed")
        u = u + length * step
    value, grad, _ = objective(u)
    return _Solution(
        u, value, float(np.max(np.abs(grad))), False, max_iterations, "Newton", "iteration limit"
    )


def _lbfgs(objective: _MeanNegativeLogLikelihood, start: np.ndarray) -> _Solution:
    """Fallback when Newton fails; bounded so that exp() stays finite."""
    result = minimize(
        lambda u: objective(u)[:2],
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[_LOG_PARAM_BOUNDS] * len(start),
        options={"maxiter": 5000, "maxfun": 10000, "ftol": 1e-15, "gtol": 1e-10},
    )
    value, grad, _ = objective(result.x)
    max_gradient = float(np.max(np.abs(grad)))
    # Line searches give up once the objective is flat to machine precision: judge the gradient.
    converged = max_gradient < 1e-6
    return _Solution(
        result.x, value, max_gradient, converged, int(result.nit), "L-BFGS-B", str(result.message)
    )


@dataclass(frozen=True)
class _Optimum:
    params: np.ndarray
    log_likelihood: float  # total, in the (rescaled) units the likelihood was built with
    converged: bool
    iterations: int
    message: str


def _maximize_likelihood(
    make_likelihood, rows: dict[str, np.ndarray], weights: np.ndarray, penalizer: float = 0.0
) -> _Optimum:
    """Maximum (penalized) likelihood over log-parameters (all parameters are positive).

    On large data the start comes from the same fit on a Poisson-thinned subsample of customers,
    so the full data only pays for the last, quadratically converging Newton steps.
    """
    likelihood = make_likelihood(rows, weights)
    start = np.zeros(likelihood.n_params)
    warm_iterations = 0
    fraction = _WARM_START_CUSTOMERS / likelihood.total_weight
    if fraction < 0.5:
        thinned = np.random.default_rng(0).poisson(weights * fraction).astype(float)
        keep = thinned > 0
        subsample = make_likelihood({name: values[keep] for name, values in rows.items()}, thinned[keep])
        warm = _newton(_MeanNegativeLogLikelihood(subsample, penalizer), start)
        if warm.converged:
            start, warm_iterations = warm.log_params, warm.iterations
    objective = _MeanNegativeLogLikelihood(likelihood, penalizer)
    solution = _newton(objective, start)
    if not solution.converged:
        solution = _lbfgs(
            objective, solution.log_params if np.all(np.isfinite(solution.log_params)) else start
        )
    degenerate = not np.all(np.abs(solution.log_params) < _DEGENERATE_LOG_PARAM)
    converged = solution.converged and not degenerate
    state = "converged" if converged else "not converged"
    detail = f"{solution.method}: {solution.message}; max |gradient| {solution.max_gradient:.1e}"
    if degenerate:
        detail = f"a parameter runs to 0 or infinity, the data do not identify the model; {detail}"
    return _Optimum(
        params=np.exp(solution.log_params),
        log_likelihood=objective.penalty(solution.log_params) - solution.value * likelihood.total_weight,
        converged=bool(converged),
        iterations=warm_iterations + solution.iterations,
        message=f"{state} ({detail})",
    )


# --------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------


class _BGNBDLikelihood:
    """Weighted BG/NBD log-likelihood with gradient and Hessian over distinct (x, t_x, T) rows.

    Terms that depend on x only (the gamma functions) are evaluated once per distinct x; the
    per-row terms of repeat customers are split into chunks evaluated on parallel threads
    (numpy releases the GIL), one per CPU.
    """

    n_params = 4

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray):
        self.x_values, self.w_by_x = _weight_by_count(x, w)
        repeat = x > 0
        self.zero_T, self.zero_w = T[~repeat], w[~repeat]
        self.total_weight = w.sum()
        n_chunks = max(1, min(_cpu_count(), int(repeat.sum()) // _ROWS_PER_THREAD))
        self.repeat_chunks = [
            tuple(part[i::n_chunks] for part in (x[repeat], t_x[repeat], T[repeat], w[repeat]))
            for i in range(n_chunks)
        ]

    @classmethod
    def from_rows(cls, rows: dict[str, np.ndarray], w: np.ndarray) -> _BGNBDLikelihood:
        return cls(rows["x"], rows["t_x"], rows["T"], w)

    def evaluate(
        self, r: float, alpha: float, a: float, b: float, hessian: bool = False
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Total log-likelihood, gradient and (optionally) Hessian w.r.t. (r, alpha, a, b)."""
        if len(self.repeat_chunks) > 1:
            parts = list(
                _thread_pool().map(
                    lambda chunk: _bgnbd_repeat_terms(chunk, r, alpha, a, b, hessian), self.repeat_chunks
                )
            )
        else:
            parts = [_bgnbd_repeat_terms(self.repeat_chunks[0], r, alpha, a, b, hessian)]
        ll = sum(part[0] for part in parts)
        grad = sum(part[1] for part in parts)

        xv, wx, total = self.x_values, self.w_by_x, self.total_weight
        # Terms shared by both branches of the likelihood (depend on x only).
        shared = gammaln(r + xv) - gammaln(r) + r * np.log(alpha)
        shared += gammaln(a + b) + gammaln(b + xv) - gammaln(b) - gammaln(a + b + xv)
        ll += _dot(wx, shared)
        digamma_ab_x = digamma(a + b + xv)
        grad += [
            _dot(wx, digamma(r + xv) - digamma(r) + np.log(alpha)),
            total * r / alpha,
            _dot(wx, digamma(a + b) - digamma_ab_x),
            _dot(wx, digamma(a + b) + digamma(b + xv) - digamma(b) - digamma_ab_x),
        ]
        # x = 0: still alive with no purchase in (0, T].
        alpha_T0 = alpha + self.zero_T
        log_alpha_T0 = np.log(alpha_T0)
        ll -= r * _dot(self.zero_w, log_alpha_T0)
        grad[0] -= _dot(self.zero_w, log_alpha_T0)
        w0_over_alpha_T0 = self.zero_w / alpha_T0
        grad[1] -= r * w0_over_alpha_T0.sum()
        if not hessian:
            return float(ll), grad, None

        h = sum(part[2] for part in parts)
        trigamma_ab, trigamma_ab_x = polygamma(1, a + b), polygamma(1, a + b + xv)
        h[0, 0] += _dot(wx, polygamma(1, r + xv) - polygamma(1, r))
        h[0, 1] += total / alpha - w0_over_alpha_T0.sum()
        h[1, 1] += -total * r / alpha**2 + r * _dot(w0_over_alpha_T0, 1.0 / alpha_T0)
        h[2, 2] += _dot(wx, trigamma_ab - trigamma_ab_x)
        h[2, 3] += _dot(wx, trigamma_ab - trigamma_ab_x)
        h[3, 3] += _dot(wx, trigamma_ab + polygamma(1, b + xv) - polygamma(1, b) - trigamma_ab_x)
        return float(ll), grad, np.triu(h) + np.triu(h, 1).T


def _bgnbd_repeat_terms(
    chunk: tuple[np.ndarray, ...], r: float, alpha: float, a: float, b: float, hessian: bool
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Row terms for x > 0: alive and silent since t_x, or dropped out right after the last
    purchase. Returns the log-likelihood, gradient and upper-triangular Hessian of the chunk."""
    x, t_x, T, w = chunk
    r_x = r + x
    inv_alpha_T, inv_alpha_tx = 1.0 / (alpha + T), 1.0 / (alpha + t_x)
    log_alpha_T, log_alpha_tx = -np.log(inv_alpha_T), -np.log(inv_alpha_tx)
    inv_b_x = 1.0 / (b + x - 1.0)
    alive = -r_x * log_alpha_T
    dropped = np.log(a) + np.log(inv_b_x) - r_x * log_alpha_tx
    ll = _dot(w, np.logaddexp(alive, dropped))
    share_dropped = expit(dropped - alive)
    w_dropped = w * share_dropped
    w_alive = w - w_dropped
    grad = np.array(
        [
            -_dot(w_alive, log_alpha_T) - _dot(w_dropped, log_alpha_tx),
            -_dot(r_x, w_alive * inv_alpha_T + w_dropped * inv_alpha_tx),
            w_dropped.sum() / a,
            -_dot(w_dropped, inv_b_x),
        ]
    )
    if not hessian:
        return ll, grad, None
    h = np.zeros((4, 4))
    h[0, 1] = -(_dot(w_alive, inv_alpha_T) + _dot(w_dropped, inv_alpha_tx))
    h[1, 1] = _dot(r_x, w_alive * inv_alpha_T**2 + w_dropped * inv_alpha_tx**2)
    h[2, 2] = -w_dropped.sum() / a**2
    h[3, 3] = _dot(w_dropped, inv_b_x**2)
    # Mixing the two branches adds share_alive * share_dropped * d d' with d = grad(alive - dropped).
    mix = w_dropped * (1.0 - share_dropped)
    d0, d1, d2, d3 = log_alpha_tx - log_alpha_T, r_x * (inv_alpha_tx - inv_alpha_T), -1.0 / a, inv_b_x
    mix_d0, mix_d1, mix_d3 = mix * d0, mix * d1, mix * d3
    h[0, 0] += _dot(mix_d0, d0)
    h[0, 1] += _dot(mix_d0, d1)
    h[0, 2] += mix_d0.sum() * d2
    h[0, 3] += _dot(mix_d0, d3)
    h[1, 1] += _dot(mix_d1, d1)
    h[1, 2] += mix_d1.sum() * d2
    h[1, 3] += _dot(mix_d1, d3)
    h[2, 2] += mix.sum() * d2**2
    h[2, 3] += mix_d3.sum() * d2
    h[3, 3] += _dot(mix_d3, d3)
    return ll, grad, h


_ROWS_PER_THREAD = 100_000


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _thread_pool() -> ThreadPoolExecutor:
    """One pool per process: a pool inherited through fork (e.g. a multiprocess Dagster
    executor) has no live threads and would hang."""
    pid = os.getpid()
    if pid not in _POOLS:
        _POOLS[pid] = ThreadPoolExecutor(max_workers=_cpu_count(), thread_name_prefix="clv")
    return _POOLS[pid]


def bgnbd_log_likelihood(
    params: BGNBDParams, frequency: Any, recency: Any, T: Any, weights: Any | None = None
) -> float:
    """Total BG/NBD log-likelihood (e.g. -9582.4 for the CDNOW fit in weeks)."""
    x, t_x, age = _validated_bgnbd_inputs(frequency, recency, T)
    w = _validated_weights(weights, len(x))
    return _BGNBDLikelihood(x, t_x, age, w).evaluate(params.r, params.alpha, params.a, params.b)[0]


def fit_bgnbd(
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    weights: Any | None = None,
    time_unit: str = "days",
    penalizer: float = 0.0,
) -> BGNBDFit:
    """Maximum-likelihood BG/NBD fit on per-customer (x, t_x, T), numpy/pandas/polars arrays.

    ``time_unit`` only labels the result (it must match the unit of recency and T); alpha comes
    out in that unit. ``weights`` count customers per row, for already-aggregated data.
    ``penalizer`` > 0 subtracts penalizer * sum(log(param)^2) from the log-likelihood (time
    rescaled so the largest T is 10): a weak prior that keeps the parameters finite when the
    plain maximum lies at a boundary (e.g. every customer drops out with the same probability,
    a and b -> infinity). 0 = plain maximum likelihood, as lifetimes.
    """
    _days_per_unit(time_unit)
    x, t_x, age = _validated_bgnbd_inputs(frequency, recency, T)
    rows, w = _compress({"x": x, "t_x": t_x, "T": age}, _validated_weights(weights, len(x)))
    # Work in time rescaled so the largest T is 10: keeps alpha O(1) for any unit.
    scale = 10.0 / max(float(age.max()), 1e-12)
    scaled_rows = {"x": rows["x"], "t_x": rows["t_x"] * scale, "T": rows["T"] * scale}
    optimum = _maximize_likelihood(_BGNBDLikelihood.from_rows, scaled_rows, w, _penalizer(penalizer))
    r, alpha_scaled, a, b = optimum.params
    params = BGNBDParams(r=float(r), alpha=float(alpha_scaled / scale), a=float(a), b=float(b))
    return BGNBDFit(
        params=params,
        # Rescaling time by s multiplies each customer's likelihood by s^x.
        log_likelihood=float(optimum.log_likelihood + np.log(scale) * _dot(w, rows["x"])),
        n_customers=int(round(w.sum())),
        n_unique_rows=len(w),
        converged=optimum.converged,
        iterations=optimum.iterations,
        message=optimum.message,
        time_unit=time_unit,
    )


def _penalizer(value: float) -> float:
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"penalizer must be finite and >= 0, got {value}")
    return float(value)


def _validated_bgnbd_inputs(
    frequency: Any, recency: Any, T: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _as_float_array(frequency, "frequency")
    t_x = _as_float_array(recency, "recency")
    age = _as_float_array(T, "T")
    if not (len(x) == len(t_x) == len(age)) or len(x) == 0:
        raise ValueError("frequency, recency and T must be non-empty and of equal length")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be a non-negative integer count")
    if np.any(t_x < 0) or np.any(t_x > age):
        raise ValueError("recency must lie in [0, T]")
    if np.any(t_x[x == 0] != 0):
        raise ValueError("recency must be 0 for customers with frequency 0")
    return x, t_x, age


def probability_alive(params: BGNBDParams, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """P(customer still active at T | x, t_x, T); 1 for customers without repeat purchases."""
    x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds_dead = (
            np.log(a) - np.log(b + x - 1.0) + (r + x) * (np.log(alpha + age) - np.log(alpha + t_x))
        )
    return np.where(x > 0, expit(-log_odds_dead), 1.0)


def expected_purchases(params: BGNBDParams, t: Any, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """E[number of purchases in (T, T + t] | x, t_x, T]; t in the fit's time unit, broadcastable."""
    return _expected_purchases_if_alive(params, t, frequency, T) * probability_alive(
        params, frequency, recency, T
    )


def _expected_purchases_if_alive(params: BGNBDParams, t: Any, frequency: Any, T: Any) -> np.ndarray:
    """Eq. (10) of Fader, Hardie & Lee (2005) without the P(alive) factor; it does not depend on
    t_x. Euler's transformation of 2F1 keeps the hypergeometric parameters small for heavy buyers."""
    x, age, horizon = (np.asarray(v, dtype=float) for v in (frequency, T, t))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + age + horizon)
    # (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) == (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)
    still_buying = np.exp((a - 1.0) * np.log1p(-z)) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    return (a + b + x - 1.0) / (a - 1.0) * (1.0 - still_buying)


def discounted_expected_purchases(
    params: BGNBDParams,
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    time_unit: str,
    horizon_months: int = 12,
    annual_discount_rate: float = 0.10,
) -> np.ndarray:
    """Sum over months k = 1..H of E[purchases in month k] / (1 + d)^(k/12).

    Purchases are discounted to today from the end of the month they fall in. Multiply by the
    value per order to get CLTV in money.
    """
    alive = probability_alive(params, frequency, recency, T)
    return alive * _discounted_purchases_if_alive(
        params, frequency, T, time_unit, horizon_months, annual_discount_rate
    )


def _discounted_purchases_if_alive(
    params: BGNBDParams,
    frequency: Any,
    T: Any,
    time_unit: str,
    horizon_months: int,
    annual_discount_rate: float,
) -> np.ndarray:
    if horizon_months < 1:
        raise ValueError("horizon_months must be at least 1")
    if annual_discount_rate <= -1:
        raise ValueError("annual_discount_rate must be greater than -1")
    month = DAYS_PER_MONTH / _days_per_unit(time_unit)
    x, age = np.broadcast_arrays(np.asarray(frequency, dtype=float), np.asarray(T, dtype=float))
    total = np.zeros(x.shape)
    previous = np.zeros(x.shape)
    for k in range(1, horizon_months + 1):
        cumulative = _expected_purchases_if_alive(params, k * month, x, age)
        total += (cumulative - previous) / (1.0 + annual_discount_rate) ** (k / 12.0)
        previous = cumulative
    return total


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


class _GammaGammaLikelihood:
    """Weighted log-likelihood of mean repeat value m given x (Fader & Hardie 2013, eq. 3).

    The gamma functions depend on x only and are evaluated once per distinct x; per row only
    log(gamma + x m) remains.
    """

    n_params = 3

    def __init__(self, x: np.ndarray, m: np.ndarray, w: np.ndarray):
        self.x, self.xm, self.w = x, x * m, w
        self.x_values, self.w_by_x = _weight_by_count(x, w)
        self.log_x_values = np.log(self.x_values)
        log_m = np.log(m)
        self.sum_w_log_m = _dot(w, log_m)
        self.sum_wx_log_m = _dot(w, x * log_m)
        self.total_weight = w.sum()

    @classmethod
    def from_rows(cls, rows: dict[str, np.ndarray], w: np.ndarray) -> _GammaGammaLikelihood:
        return cls(rows["x"], rows["m"], w)

    def evaluate(
        self, p: float, q: float, gamma: float, hessian: bool = False
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Total log-likelihood, gradient and (optionally) Hessian w.r.t. (p, q, gamma)."""
        xv, wx, log_xv, total = self.x_values, self.w_by_x, self.log_x_values, self.total_weight
        pxv = p * xv
        inv_pooled = 1.0 / (gamma + self.xm)
        w_log_pooled = self.w * -np.log(inv_pooled)
        sum_wx_log_pooled = _dot(self.x, w_log_pooled)
        ll = (
            _dot(wx, gammaln(pxv + q) - gammaln(pxv) + pxv * log_xv)
            - total * (gammaln(q) - q * np.log(gamma))
            + p * self.sum_wx_log_m
            - self.sum_w_log_m
            - p * sum_wx_log_pooled
            - q * w_log_pooled.sum()
        )
        digamma_pxq = digamma(pxv + q)
        w_inv_pooled = self.w * inv_pooled
        sum_wx_inv_pooled = _dot(self.x, w_inv_pooled)
        grad = np.array(
            [
                _dot(wx, xv * (digamma_pxq - digamma(pxv) + log_xv)) + self.sum_wx_log_m - sum_wx_log_pooled,
                _dot(wx, digamma_pxq) - total * (digamma(q) - np.log(gamma)) - w_log_pooled.sum(),
                total * q / gamma - p * sum_wx_inv_pooled - q * w_inv_pooled.sum(),
            ]
        )
        if not hessian:
            return float(ll), grad, None
        trigamma_pxq = polygamma(1, pxv + q)
        h_pg = -sum_wx_inv_pooled
        h_qg = total / gamma - w_inv_pooled.sum()
        h_gg = -total * q / gamma**2 + _dot(p * self.x + q, w_inv_pooled * inv_pooled)
        h = np.array(
            [
                [_dot(wx, xv**2 * (trigamma_pxq - polygamma(1, pxv))), _dot(wx, xv * trigamma_pxq), h_pg],
                [0.0, _dot(wx, trigamma_pxq) - total * polygamma(1, q), h_qg],
                [0.0, 0.0, h_gg],
            ]
        )
        return float(ll), grad, np.triu(h) + np.triu(h, 1).T


def fit_gamma_gamma(
    frequency: Any, mean_value: Any, *, weights: Any | None = None, penalizer: float = 0.0
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma fit on repeat customers (x >= 1, mean value > 0).

    ``penalizer``: as in fit_bgnbd, with values in units of their weighted mean.

    Zero or negative means cannot come from a gamma distribution, so they are rejected rather
    than silently dropped; ``fit_clv`` filters them out before fitting.
    """
    x = _as_float_array(frequency, "frequency")
    m = _as_float_array(mean_value, "mean_value")
    if len(x) != len(m) or len(x) == 0:
        raise ValueError("frequency and mean_value must be non-empty and of equal length")
    if np.any(x < 1):
        raise ValueError("Gamma-Gamma is fitted on repeat customers only (frequency >= 1)")
    if np.any(m <= 0):
        raise ValueError("mean_value must be positive; filter out zero or negative customers first")
    # No row compression here: mean spends rarely repeat exactly and each row costs one log, so
    # grouping would cost more than it saves (2.5x slower on the 1M-customer benchmark).
    w = _validated_weights(weights, len(x))
    # Work in units of the average value so gamma starts O(1) whatever the currency.
    scale = float(np.average(m, weights=w))
    optimum = _maximize_likelihood(
        _GammaGammaLikelihood.from_rows, {"x": x, "m": m / scale}, w, _penalizer(penalizer)
    )
    p, q, gamma_scaled = optimum.params
    params = GammaGammaParams(p=float(p), q=float(q), gamma=float(gamma_scaled * scale))
    return GammaGammaFit(
        params=params,
        # Rescaling money by 1/c divides each customer's density by c.
        log_likelihood=float(optimum.log_likelihood - np.log(scale) * w.sum()),
        n_customers=int(round(w.sum())),
        converged=optimum.converged,
        iterations=optimum.iterations,
        message=optimum.message,
    )


def expected_value_per_order(params: GammaGammaParams, frequency: Any, mean_value: Any) -> np.ndarray:
    """E[spend (or margin) per future order | x, observed mean]: a credibility-weighted blend
    of the customer's own mean and the population mean. Customers with x = 0 get the latter."""
    if params.q <= 1:
        raise ValueError("Gamma-Gamma q <= 1: the population mean spend is undefined")
    x = np.asarray(frequency, dtype=float)
    m = np.nan_to_num(np.asarray(mean_value, dtype=float), nan=0.0)
    p, q = params.p, params.q
    own_weight = p * x / (p * x + q - 1.0)
    return (1.0 - own_weight) * params.population_mean + own_weight * np.where(x > 0, m, 0.0)


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
    Raises ValueError when a fit does not converge rather than scoring with meaningless params.
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
        raise ValueError("no repeat customers with positive value to fit the Gamma-Gamma model")
    gamma_gamma = fit_gamma_gamma(repeaters["frequency"], repeaters[value_col], penalizer=penalizer)
    for name, fit in (("BG/NBD", bgnbd), ("Gamma-Gamma", gamma_gamma)):
        if not fit.converged:
            raise ValueError(f"{name} fit failed: {fit.message}")
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
