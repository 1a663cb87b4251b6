"""A small, fully known warehouse for activation and measurement tests.

Builds the tables the upstream stages will produce (identity, segments, models, raw
purchases, spend) with consent, unsubscribes, messy emails and a built-in treatment
effect, so tests can check exports and lift against ground truth without running the
upstream pipeline.
"""

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from segmentation_platform.core.activation import holdout_bucket

SEGMENTS = ("champions", "loyal", "at_risk", "win_back")
SNAPSHOTS = tuple(dt.date(2025, 2, 3) + dt.timedelta(weeks=i) for i in range(5))
CHANNELS = ("search", "social", "email", "organic")
HOLDOUT_SALT = "test-salt"
HOLDOUT_SHARE = 0.2


@dataclass
class World:
    path: Path
    customers: pd.DataFrame
    snapshots: tuple[dt.date, ...] = SNAPSHOTS
    data_through: dt.date = dt.date(2025, 5, 1)
    extras: dict = field(default_factory=dict)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path), read_only=read_only)


def _write(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    schema = table.split(".")[0]
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.register("_frame", frame)
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _frame")
    conn.unregister("_frame")


def build_world(
    path: Path,
    customers: int = 600,
    seed: int = 7,
    conversion_uplift: float = 0.15,
    data_through: dt.date = dt.date(2025, 5, 1),
) -> World:
    """Write the fixture warehouse to `path` (a DuckDB file) and return what it holds."""
    rng = np.random.default_rng(seed)
    keys = [f"C{i:05d}" for i in range(customers)]
    people = pd.DataFrame(
        {
            "customer_key": keys,
            "first_name": [f"Name{i}" for i in range(customers)],
            "last_name": [f"Family{i}" for i in range(customers)],
            # Messy case and whitespace: hashes must use the normalized form.
            "email": [f"  Person.{i}@Example.COM " if i % 9 else None for i in range(customers)],
            "phone": [f"+4420{7000000 + i}" if i % 4 else None for i in range(customers)],
            "email_consent": pd.array(rng.random(customers) < 0.7, dtype="boolean"),
            "sms_consent": rng.random(customers) < 0.4,
            "email_unsubscribed": rng.random(customers) < 0.1,
            "first_seen_at": pd.Timestamp("2024-06-01"),
        }
    )
    people.loc[people.index % 13 == 0, "email_consent"] = pd.NA
    segment_of = rng.integers(0, len(SEGMENTS), customers)
    assignments, clv, churn, rfm, features = [], [], [], [], []
    channel_of = rng.integers(0, len(CHANNELS), customers)
    for week, snapshot in enumerate(SNAPSHOTS):
        if week:
            moving = rng.random(customers) < 0.15
            segment_of = np.where(moving, rng.integers(0, len(SEGMENTS), customers), segment_of)
        present = np.ones(customers, dtype=bool)
        present[-20:] = week >= 2  # late arrivals: (new) in migration
        for i in np.flatnonzero(present):
            segment = SEGMENTS[segment_of[i]]
            assignments.append(
                (keys[i], snapshot, segment, "v1", f"rule_{segment}", "high", "active", "low", "x", 1)
            )
            clv.append((keys[i], snapshot, float(rng.gamma(2.0, 80.0)), float(rng.random())))
            churn.append((keys[i], snapshot, float(rng.random()), "low"))
            rfm.append(
                (keys[i], snapshot, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
            )
            features.append((keys[i], snapshot, CHANNELS[channel_of[i]]))
    assignments_frame = pd.DataFrame(
        assignments,
        columns=[
            "customer_key",
            "snapshot_date",
            "action_segment",
            "scheme_version",
            "rule",
            "value_tier",
            "lifecycle_stage",
            "risk_tier",
            "rfm_segment",
            "behaviour_cluster",
        ],
    )
    profiles = pd.DataFrame(
        {
            "action_segment": list(SEGMENTS),
            "scheme_version": "v1",
            "segment_order": [1, 2, 3, 4],
            "customers": [150, 150, 150, 150],
            "objective": ["retain", "grow", "save", "reactivate"],
            "recommended_action": ["vip preview", "cross-sell", "service call", "win-back offer"],
            "channel": ["email", "email", "phone", "email"],
            "approved_usage": [
                "email, crm",
                "email, crm, paid_media_retargeting",
                "email, crm, call_centre, paid_media_retargeting",
                "email, paid_media_retargeting",
            ],
        }
    )
    # Purchases: history before the first snapshot, and outcomes after every snapshot,
    # with a higher purchase rate for customers who are not held out (the treatment effect).
    orders, receipts = [], []
    start = dt.datetime(2024, 11, 1)
    end = dt.datetime.combine(data_through, dt.time())
    held = np.array([holdout_bucket(k, HOLDOUT_SALT) < HOLDOUT_SHARE for k in keys])
    days = (end - start).days
    weekly_rate = np.where(held, 0.05, 0.05 + conversion_uplift / 4.3)
    buyer, day = np.nonzero(rng.random((customers, days)) < weekly_rate[:, None] / 7)
    for i, d in zip(buyer.tolist(), day.tolist(), strict=True):
        when = start + dt.timedelta(days=d, hours=int(rng.integers(8, 20)))
        amount = float(round(rng.lognormal(3.8, 0.6), 2))
        cost = amount * 0.6 if rng.random() < 0.9 else None
        if i % 3:
            orders.append((f"O{len(orders)}", f"A{i}", when, amount, cost, when.date()))
        else:
            receipts.append((f"R{len(receipts)}", "S1", when, amount, cost, f"L{i}", None, None, when.date()))
    key_map = pd.DataFrame(
        [("web_orders", f"A{i}", k) for i, k in enumerate(keys) if i % 3]
        + [("pos_transactions", f"L{i}", k) for i, k in enumerate(keys) if not i % 3],
        columns=["source", "source_id", "customer_key"],
    )
    spend_days = pd.date_range("2024-11-01", data_through, freq="D", inclusive="left")
    spend = pd.DataFrame(
        [(d.date(), c, 40.0 if c != "organic" else 0.0, "always-on") for d in spend_days for c in CHANNELS],
        columns=["date", "channel", "spend", "campaign"],
    )
    with duckdb.connect(str(path)) as conn:
        _write(
            conn,
            "identity.customers",
            people[
                [
                    "customer_key",
                    "first_name",
                    "last_name",
                    "email",
                    "phone",
                    "email_consent",
                    "sms_consent",
                    "email_unsubscribed",
                    "first_seen_at",
                ]
            ],
        )
        _write(conn, "identity.customer_key_map", key_map)
        _write(conn, "segments.assignments", assignments_frame)
        _write(conn, "segments.profiles", profiles)
        _write(
            conn,
            "models.clv_scores",
            pd.DataFrame(clv, columns=["customer_key", "snapshot_date", "cltv", "p_alive"]),
        )
        _write(
            conn,
            "models.churn_scores",
            pd.DataFrame(churn, columns=["customer_key", "snapshot_date", "churn_probability", "risk_tier"]),
        )
        _write(
            conn,
            "models.rfm_scores",
            pd.DataFrame(rfm, columns=["customer_key", "snapshot_date", "r_score", "f_score", "m_score"]),
        )
        _write(
            conn,
            "features.customer_features",
            pd.DataFrame(features, columns=["customer_key", "snapshot_date", "acquisition_channel"]),
        )
        _write(
            conn,
            "raw.web_orders",
            pd.DataFrame(
                orders, columns=["order_id", "account_id", "ordered_at", "amount", "cost", "_partition_date"]
            ),
        )
        _write(
            conn,
            "raw.pos_transactions",
            pd.DataFrame(
                receipts,
                columns=[
                    "receipt_id",
                    "store_id",
                    "purchased_at",
                    "amount",
                    "cost",
                    "loyalty_id",
                    "phone",
                    "email",
                    "_partition_date",
                ],
            ),
        )
        _write(conn, "raw.marketing_spend", spend)
        conn.execute("ALTER TABLE segments.assignments ALTER snapshot_date TYPE DATE")
    return World(
        path=path,
        customers=people,
        data_through=data_through,
        extras={"held": dict(zip(keys, held, strict=True))},
    )


def write_config(
    folder: Path,
    suppression_rows: str = "email\n",
    webhook_url: str | None = None,
    extra: str = "",
) -> Path:
    """A destinations.yaml for tests: every destination type, the test holdout, a suppression file."""
    (folder / "suppression.csv").write_text(suppression_rows)
    webhook = (
        f"""
  - name: hook
    type: webhook
    purpose: marketing
    consent: any
    sync_mode: delta
    segments: all
    fields: [customer_key, action_segment, cltv]
    url: {webhook_url}
    batch_size: 50
    max_attempts: 3
    backoff_seconds: 0.01
    timeout_seconds: 2
"""
        if webhook_url
        else ""
    )
    path = folder / "destinations.yaml"
    path.write_text(
        f"""version: 1
suppression:
  path: suppression.csv
holdouts:
  experiments:
    - name: always_on
      salt: {HOLDOUT_SALT}
      share: {HOLDOUT_SHARE}
      starts: 2025-01-01
      segments: all
destinations:
  - name: crm
    type: crm_upsert_csv
    purpose: service
    sync_mode: full
    segments: all
    fields: [customer_key, action_segment, cltv, churn_probability, playbook_recommended_action, email]
  - name: email_list
    type: map_list
    purpose: marketing
    consent: email
    sync_mode: delta
    segments: all
    fields: [customer_key, email, first_name, action_segment, playbook_recommended_action]
  - name: sms_list
    type: map_list
    purpose: marketing
    consent: sms
    format: jsonl
    sync_mode: full
    segments: [at_risk, win_back]
    fields: [customer_key, phone, action_segment]
  - name: cdp
    type: cdp_traits_jsonl
    purpose: marketing
    consent: any
    sync_mode: delta
    segments: all
    fields: [customer_key, action_segment, value_tier, cltv]
  - name: ads
    type: ad_audience
    purpose: marketing
    consent: any
    usage: paid_media_retargeting
    sync_mode: full
    segments: all
    fields: [email_sha256, phone_sha256, action_segment]
{webhook}{extra}"""
    )
    return path
