"""Training labels: complete label windows, BG/NBD signals and the posterior P(dropped out | silence) of each past snapshot."""

import numpy as np
import pandas as pd

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
