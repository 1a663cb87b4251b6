"""Maximum likelihood shared by both fits: distinct-pattern compression, Newton on
log-parameters with an L-BFGS-B fallback, and the degenerate-fit rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize

from segmentation_platform.core.models.clv._summary import DAYS_PER_UNIT

_LOG_PARAM_BOUNDS = (-30.0, 30.0)  # keeps exp() finite in the L-BFGS-B fallback
# Fits run in rescaled units (largest T = 10, mean value = 1), where a parameter beyond e^+-15
# means the likelihood keeps improving towards 0 or infinity: the data do not identify the model.
_DEGENERATE_LOG_PARAM = 15.0

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


def _penalizer(value: float) -> float:
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"penalizer must be finite and >= 0, got {value}")
    return float(value)


class UnidentifiedModel(ValueError):
    """The data cannot identify the model (no repeat buyers, a fit that does not converge,
    Gamma-Gamma q <= 1): a property of too little or too odd history, not a bug in the input."""
