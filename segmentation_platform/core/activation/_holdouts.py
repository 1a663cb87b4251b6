"""Holdout groups: a deterministic, sticky, salted-hash share of each experiment's segments kept out of activation."""

import datetime as dt
import hashlib
from collections.abc import Iterable

import duckdb
import numpy as np
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.activation._common import ASSIGNMENTS_TABLE, HOLDOUTS_TABLE
from segmentation_platform.core.activation._config import (
    ActivationConfig,
    Experiment,
)
from segmentation_platform.core.activation._tables import HOLDOUTS_SCHEMA

# --------------------------------------------------------------------------- holdouts


def holdout_bucket(customer_key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by key and salt: the same customer always lands the same way."""
    digest = hashlib.sha256(f"{salt}:{customer_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_holdouts(
    current: pd.DataFrame, history: pd.DataFrame, snapshot: dt.date, experiments: Iterable[Experiment]
) -> pd.DataFrame:
    """Who is held out at `snapshot`, per active experiment, and since when.

    `current` holds (customer_key, action_segment) at the snapshot; `history` holds
    (customer_key, action_segment, snapshot_date) rows up to and including it. A customer
    enters an experiment the first snapshot they sit in one of its segments, and a held-out
    customer stays held out while the experiment runs, even after moving to another
    segment: treating them later would contaminate the control group.
    """
    rows = []
    history = history[pd.to_datetime(history["snapshot_date"]).dt.date <= snapshot]
    for experiment in experiments:
        if not experiment.active_on(snapshot):
            continue
        in_scope = history[pd.to_datetime(history["snapshot_date"]).dt.date >= experiment.starts]
        if experiment.segments is not None:
            in_scope = in_scope[in_scope["action_segment"].isin(experiment.segments)]
        enrolled = in_scope.groupby("customer_key")["snapshot_date"].min()
        candidates = current[current["customer_key"].isin(enrolled.index)]
        if candidates.empty:
            continue
        buckets = np.array([holdout_bucket(key, experiment.salt) for key in candidates["customer_key"]])
        held = candidates[buckets < experiment.share]
        rows.append(
            pd.DataFrame(
                {
                    "snapshot_date": snapshot,
                    "experiment": experiment.name,
                    "customer_key": held["customer_key"].to_numpy(),
                    "action_segment": held["action_segment"].to_numpy(),
                    "bucket": buckets[buckets < experiment.share],
                    "share": experiment.share,
                    "held_out_since": pd.to_datetime(enrolled.loc[held["customer_key"]].to_numpy()).date,
                }
            )
        )
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in HOLDOUTS_SCHEMA.names})
    return pd.concat(rows, ignore_index=True).sort_values(["experiment", "customer_key"], ignore_index=True)


def compute_holdouts(
    conn: duckdb.DuckDBPyConnection, snapshot: dt.date, config: ActivationConfig
) -> pd.DataFrame:
    """`assign_holdouts` over the warehouse, reading each customer's first snapshot per segment only."""
    current = conn.execute(
        f"SELECT customer_key, action_segment FROM {ASSIGNMENTS_TABLE} WHERE snapshot_date = ?", [snapshot]
    ).df()
    frames = [assign_holdouts(current, _EMPTY_HISTORY, snapshot, [])]
    for experiment in config.active_experiments(snapshot):
        history = conn.execute(
            f"SELECT customer_key, action_segment, min(snapshot_date) AS snapshot_date FROM {ASSIGNMENTS_TABLE} "
            "WHERE snapshot_date BETWEEN ? AND ? GROUP BY ALL",
            [experiment.starts, snapshot],
        ).df()
        frames.append(assign_holdouts(current, history, snapshot, [experiment]))
    return pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)


_EMPTY_HISTORY = pd.DataFrame({"customer_key": [], "action_segment": [], "snapshot_date": []})


def write_holdouts(
    conn: duckdb.DuckDBPyConnection, snapshot: dt.date, config: ActivationConfig
) -> pd.DataFrame:
    """Compute the snapshot's holdouts and replace its partition of `activation.holdouts`."""
    frame = compute_holdouts(conn, snapshot, config)
    warehouse.replace_partitions(
        conn, HOLDOUTS_TABLE, frame, "snapshot_date", [snapshot], columns=HOLDOUTS_SCHEMA.sql_columns
    )
    return frame


def holdout_share_deviations(
    conn: duckdb.DuckDBPyConnection, snapshot: dt.date, config: ActivationConfig, frame: pd.DataFrame
) -> list[dict]:
    """Per active experiment: its held-out share of the covered customers, and whether that lies
    outside 4 standard errors (+0.5 points) of the configured share: the holdout check's rule."""
    results = []
    for experiment in config.active_experiments(snapshot):
        segments = conn.execute(
            f"SELECT action_segment, count(*) FROM {ASSIGNMENTS_TABLE} WHERE snapshot_date = ? GROUP BY 1",
            [snapshot],
        ).fetchall()
        population = sum(n for segment, n in segments if experiment.covers(segment))
        held = frame[
            (frame["experiment"] == experiment.name) & frame["action_segment"].map(experiment.covers)
        ]
        if population == 0:
            continue
        observed = len(held) / population
        tolerance = 4 * (experiment.share * (1 - experiment.share) / population) ** 0.5 + 0.005
        results.append(
            {
                "snapshot_date": snapshot.isoformat(),
                "experiment": experiment.name,
                "customers": population,
                "held_out": len(held),
                "observed_share": round(observed, 4),
                "configured_share": experiment.share,
                "outside_tolerance": abs(observed - experiment.share) > tolerance,
            }
        )
    return results
