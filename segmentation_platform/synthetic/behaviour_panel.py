"""A fast synthetic feature panel for churn, clustering and segment tests and benchmarks.

The full generator writes landing files that go through ingestion, identity and the
feature store; this panel skips all of that and produces, directly, what the modelling
stage reads: weekly snapshots with exactly the columns of `features.customer_features`
(the feature registry), the purchase log, and the truth (when each customer really
stopped buying). Purchases follow a Poisson process that ends at a latent dropout time;
engagement drives both email activity and the dropout hazard, so churn is learnable from
the features, as it should be.
"""

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from segmentation_platform.core.features import LifecycleThresholds, feature_columns

CHANNELS = np.array(["paid_search", "social", "display", "affiliate", "email", "referral", "organic"])
CHANNEL_SHARES = np.array([0.24, 0.18, 0.06, 0.10, 0.07, 0.10, 0.25])
CATEGORIES = np.array(["accessories", "apparel", "beauty", "electronics", "footwear", "home", "outdoor"])
DEFAULT_STAGES = LifecycleThresholds()
_PANDAS_TYPES = {"DOUBLE": "float64", "BIGINT": "Int64", "INTEGER": "Int64", "BOOLEAN": "boolean"}


@dataclass
class Panel:
    features: pd.DataFrame  # one row per customer and snapshot_date, registry columns in order
    purchases: pd.DataFrame  # customer_key, purchased_at, amount, channel
    truth: pd.DataFrame  # customer_key, acquired_at, dropout_at, engagement, purchase_rate


def lifecycle_stage(
    frequency: np.ndarray,
    recency_days: np.ndarray,
    days_since_first: np.ndarray,
    stages: LifecycleThresholds = DEFAULT_STAGES,
) -> np.ndarray:
    return np.select(
        [
            frequency == 0,
            days_since_first <= stages.new_within_days,
            recency_days <= stages.active_within_days,
            recency_days <= stages.at_risk_within_days,
            recency_days <= stages.dormant_within_days,
        ],
        ["prospect", "new", "active", "at_risk", "dormant"],
        default="lost",
    )


def simulate_panel(
    customers: int,
    snapshot_dates: list[date],
    *,
    start: date | None = None,
    seed: int = 7,
    history_fraction: float = 1.0,
    prospect_share: float = 0.05,
    full_snapshots: list[date] | None = None,
) -> Panel:
    """Snapshots at `snapshot_dates`; `full_snapshots` (default: the last) hold every
    customer, the others keep `history_fraction` of them (the same ones every week)."""
    rng = np.random.default_rng(seed)
    snapshot_dates = sorted(snapshot_dates)
    end = snapshot_dates[-1]
    start = start or end - timedelta(days=540)
    span = (end - start).days
    keys = np.array([f"C{i:07d}" for i in range(customers)], dtype=object)

    engagement = rng.beta(2.0, 2.0, customers)
    purchase_rate = rng.gamma(2.0, 1.0 / 60.0, customers) * (0.5 + engagement)
    acquired = rng.uniform(0, span * 0.85, customers)
    # Dropout hazard falls with engagement: the disengaged leave within months.
    dropout = acquired + rng.exponential(1.0 / (0.0005 + 0.012 * (1 - engagement) ** 2), customers)
    prospect = rng.random(customers) < prospect_share
    web_share = rng.beta(1.2, 1.2, customers)
    favourite = rng.choice(len(CATEGORIES), customers)
    basket_scale = rng.gamma(4.0, 18.0, customers)
    discount_affinity = rng.beta(1.5, 6.0, customers)
    channel = rng.choice(CHANNELS, customers, p=CHANNEL_SHARES / CHANNEL_SHARES.sum())

    active_days = np.clip(np.minimum(dropout, span) - acquired, 0, None)
    counts = np.where(prospect, 0, rng.poisson(purchase_rate * active_days) + 1)  # + the first purchase
    owner = np.repeat(np.arange(customers), counts)
    is_first = np.zeros(len(owner), dtype=bool)
    is_first[np.r_[0, np.cumsum(counts)[:-1]][counts > 0]] = True
    day = acquired[owner] + np.where(is_first, 0.0, rng.random(len(owner)) * active_days[owner])
    order = np.lexsort((day, owner))
    owner, day = owner[order], day[order]
    orders = {
        "owner": owner,
        "day": day,
        "amount": np.round(rng.gamma(3.0, basket_scale[owner] / 3.0), 2) + 1.0,
        "on_web": rng.random(len(owner)) < web_share[owner],
        "category": np.where(
            rng.random(len(owner)) < 0.6, favourite[owner], rng.choice(len(CATEGORIES), len(owner))
        ),
    }
    orders["discount"] = np.round(
        orders["amount"] * discount_affinity[owner] * (rng.random(len(owner)) < 0.5), 2
    )
    orders["cost"] = np.round(orders["amount"] * rng.uniform(0.4, 0.8, len(owner)), 2)

    start_ts = pd.Timestamp(start)
    purchases = pd.DataFrame(
        {
            "customer_key": keys[owner],
            "purchased_at": (start_ts + pd.to_timedelta(day, unit="D")).astype("datetime64[us]"),
            "amount": orders["amount"],
            "channel": np.where(orders["on_web"], "web", "pos"),
        }
    )
    people = {
        "keys": keys,
        "acquired": acquired,
        "engagement": engagement,
        "dropout": dropout,
        "channel": channel,
        "email_consent": rng.random(customers) < 0.7,
        "sms_consent": rng.random(customers) < 0.3,
        "satisfaction": np.round(rng.uniform(2, 5, customers), 1),
    }
    history_keep = rng.random(customers) < history_fraction
    full = set(full_snapshots or snapshot_dates[-1:])
    frames = []
    for snapshot in snapshot_dates:
        cutoff = (pd.Timestamp(snapshot) - start_ts).days
        keep = acquired < cutoff
        if snapshot not in full:
            keep &= history_keep
        frames.append(_snapshot(snapshot, start_ts, cutoff, keep, people, orders, rng))
    truth = pd.DataFrame(
        {
            "customer_key": keys,
            "acquired_at": start_ts + pd.to_timedelta(acquired, unit="D"),
            "dropout_at": start_ts + pd.to_timedelta(dropout, unit="D"),
            "engagement": engagement,
            "purchase_rate": purchase_rate,
            "prospect": prospect,
        }
    )
    return Panel(features=pd.concat(frames, ignore_index=True), purchases=purchases, truth=truth)


def _snapshot(snapshot, start_ts, cutoff, keep, people, orders, rng) -> pd.DataFrame:
    n = len(people["keys"])
    seen = (orders["day"] < cutoff) & keep[orders["owner"]]
    o, day = orders["owner"][seen], orders["day"][seen]
    amount, on_web, discount, cost = (orders[k][seen] for k in ("amount", "on_web", "discount", "cost"))

    def total(weights=None):
        return np.bincount(o, weights=weights, minlength=n)

    frequency = total().astype(np.int64)
    revenue = total(amount)
    web_orders = total(on_web).astype(np.int64)
    first, last = np.full(n, np.nan), np.full(n, np.nan)
    distinct_days = np.zeros(n)
    if len(o):
        starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
        ends = np.r_[starts[1:], len(o)] - 1
        first[o[starts]], last[o[ends]] = day[starts], day[ends]
        whole_day = np.floor(day)
        new_day = np.r_[True, (o[1:] != o[:-1]) | (whole_day[1:] != whole_day[:-1])]
        distinct_days = np.bincount(o[new_day], minlength=n)
    k = len(CATEGORIES)
    categories = np.bincount(o * k + orders["category"][seen], minlength=n * k).reshape(n, k)

    rows = np.flatnonzero(keep)
    f = frequency[rows]
    bought = f > 0
    recency = np.where(bought, cutoff - np.floor(last[rows]), np.nan)
    since_first = np.where(bought, cutoff - np.floor(first[rows]), np.nan)
    cats = categories[rows]
    shares = cats / np.maximum(cats.sum(axis=1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = 0.0 - np.nansum(np.where(shares > 0, shares * np.log2(shares), 0.0), axis=1)
    alive = people["dropout"][rows] > cutoff
    engagement = people["engagement"][rows]
    email = {}
    for days in (30, 90):
        sends = rng.poisson(4 * days / 30, len(rows))
        opens = rng.binomial(sends, np.clip(engagement * np.where(alive, 0.9, 0.35), 0, 1))
        email |= {f"email_sends_{days}d": sends, f"email_opens_{days}d": opens}
        email[f"email_clicks_{days}d"] = rng.binomial(opens, 0.25)
    tickets_90 = rng.poisson(0.1 + 0.4 * (1 - engagement))
    snapshot_ts = pd.Timestamp(snapshot)
    acquired_at = start_ts + pd.to_timedelta(people["acquired"][rows], unit="D")
    last_purchase_at = start_ts + pd.to_timedelta(last[rows], unit="D")
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = pd.DataFrame(
            {
                "snapshot_date": snapshot_ts,
                "customer_key": people["keys"][rows],
                "lifecycle_stage": lifecycle_stage(f, recency, since_first),
                "first_purchase_at": start_ts + pd.to_timedelta(first[rows], unit="D"),
                "last_purchase_at": last_purchase_at,
                "recency_days": recency,
                "frequency": f,
                "repeat_frequency": np.maximum(distinct_days[rows] - 1, 0),
                "monetary_total": revenue[rows],
                "monetary_avg": np.where(bought, revenue[rows] / np.maximum(f, 1), np.nan),
                "mean_interpurchase_days": np.where(
                    f > 1, (last[rows] - first[rows]) / np.maximum(f - 1, 1), np.nan
                ),
                "web_orders": web_orders[rows],
                "pos_orders": f - web_orders[rows],
                "web_revenue_share": np.where(bought, total(amount * on_web)[rows] / revenue[rows], np.nan),
                "purchase_channels": np.select(
                    [(web_orders[rows] > 0) & (web_orders[rows] < f), web_orders[rows] > 0, bought],
                    ["omnichannel", "web", "pos"],
                    default=None,
                ),
                "distinct_categories": (cats > 0).sum(axis=1),
                "category_entropy": np.where(bought, entropy, np.nan),
                "top_category": np.where(bought, CATEGORIES[cats.argmax(axis=1)], None),
                "top_category_share": np.where(bought, shares.max(axis=1), np.nan),
                "discount_share": np.where(
                    bought, total(discount)[rows] / (revenue[rows] + total(discount)[rows]), np.nan
                ),
                "discounted_order_share": np.where(
                    bought, total(discount > 0)[rows] / np.maximum(f, 1), np.nan
                ),
                "contribution_margin": np.where(bought, (revenue - total(cost))[rows], np.nan),
                "margin_rate": np.where(bought, (revenue - total(cost))[rows] / revenue[rows], np.nan),
                **email,
                "email_open_rate_90d": np.where(
                    email["email_sends_90d"] > 0, email["email_opens_90d"] / email["email_sends_90d"], np.nan
                ),
                "email_click_rate_90d": np.where(
                    email["email_sends_90d"] > 0, email["email_clicks_90d"] / email["email_sends_90d"], np.nan
                ),
                "support_tickets_90d": tickets_90,
                "support_tickets_total": tickets_90 + rng.poisson(0.3, len(rows)),
                "support_satisfaction_mean": np.where(tickets_90 > 0, people["satisfaction"][rows], np.nan),
                "acquisition_channel": people["channel"][rows],
                "email_consent": people["email_consent"][rows],
                "sms_consent": people["sms_consent"][rows],
                "unsubscribed": ~people["email_consent"][rows] & (rng.random(len(rows)) < 0.3),
                "first_seen_at": acquired_at,
                "last_seen_at": np.where(bought, last_purchase_at.to_numpy(), acquired_at.to_numpy()),
                "tenure_days": cutoff - np.floor(people["acquired"][rows]),
            }
        )
    columns = feature_columns()
    for name, sql_type in columns.items():
        if sql_type in _PANDAS_TYPES:
            frame[name] = frame[name].astype(_PANDAS_TYPES[sql_type])
    return frame[list(columns)]
