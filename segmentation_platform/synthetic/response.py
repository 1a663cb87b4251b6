"""Campaign response: the outside world answering an activation, with a known effect.

After a snapshot is activated, marketing contacts the customers its exports reached and
some of them buy because of it. `simulate_response` plays that world for one snapshot:

- who was reached: the members of every *marketing* destination's committed export of
  the snapshot (the `.state_*` member list its manifest names), so consent, suppression
  and holdouts act exactly as activation applied them;
- who was held out, and in which action segment everyone sat: `activation.holdouts` and
  `segments.assignments` of the warehouse;
- who each customer really is: the identity key map joined to `ground_truth/identity.parquet`,
  whose person's true mean order value (`persons.parquet`) sets the campaign order's size.

Each reached customer responds with their segment's configured probability and places
one campaign order within the outcome window: a web order on their shop account, else a
store receipt on their loyalty card, else an anonymous receipt nobody can attribute. The
orders land as extra day files, `landing/<source>/<day>_campaign-<snapshot>.csv`, in the
source contracts' format; ingestion of those days picks them up like any other delivery.

The true effect goes to `ground_truth/uplift.json`: per segment, the incremental
conversions and revenue the campaign added to what customers bought anyway, divided by
the group sizes, i.e. exactly the expected treated-minus-holdout difference measurement
estimates (intention to treat, purchases identified through the key map, the window of
`core.measurement.SHORT_WINDOW_DAYS`).

Deterministic per seed and snapshot; re-running replaces this snapshot's campaign files
and its entry in uplift.json, and nothing else.
"""

import datetime as dt
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl

from segmentation_platform.contracts import POS_TRANSACTIONS, WEB_ORDERS, SourceContract
from segmentation_platform.core import ingestion, warehouse
from segmentation_platform.core.measurement import SHORT_WINDOW_DAYS
from segmentation_platform.core.warehouse import tables
from segmentation_platform.synthetic.population import CATEGORIES

ASSIGNMENTS_TABLE = tables.SEGMENT_ASSIGNMENTS
HOLDOUTS_TABLE = tables.HOLDOUTS
KEY_MAP_TABLE = tables.CUSTOMER_KEY_MAP
UPLIFT_FILE = "uplift.json"
MEAN_RESPONSE_DELAY_DAYS = 7.0  # campaign orders cluster in the first days after the send
ORDER_VALUE_SIGMA = 0.5  # log-normal spread of one order around the person's true mean
OPEN_HOURS = (8, 22)
DEFAULT_STORE = "S001"
_SOURCES: tuple[SourceContract, ...] = (WEB_ORDERS, POS_TRANSACTIONS)


class ResponseError(ValueError):
    """The campaign cannot be simulated from what the warehouse and data folder hold."""


@dataclass(frozen=True)
class ResponseSummary:
    snapshot: dt.date
    window_days: int
    orders: int
    files: list[Path]
    segments: dict[str, dict] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"campaign after {self.snapshot}: {self.orders:,} orders in {len(self.files)} files "
            f"({self.window_days}-day window)",
            f"{'segment':<20} {'rate':>5} {'treated':>8} {'holdout':>8} {'reached':>8} {'orders':>7} "
            f"{'conv. lift':>10} {'rev. lift':>9}",
        ]
        for name, s in self.segments.items():
            lines.append(
                f"{name:<20} {s['response_rate']:>5.2f} {s['treatment_customers']:>8,} "
                f"{s['holdout_customers']:>8,} {s['reached_treated']:>8,} {s['responders']:>7,} "
                f"{s['conversion_lift']:>+10.4f} {s['revenue_lift']:>+9.2f}"
            )
        return "\n".join(lines)


def campaign_file_name(day: dt.date, snapshot: dt.date) -> str:
    """`<day>_campaign-<snapshot>.csv`: ingestion reads it as one more file of `day`."""
    return f"{day.isoformat()}_campaign-{snapshot.isoformat()}.csv"


def parse_response_rates(items: Iterable[str]) -> dict[str, float]:
    """`segment=rate` pairs (command line) to a mapping; rates are probabilities."""
    rates = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ResponseError(f"{item!r}: expected SEGMENT=RATE, e.g. at_risk=0.2")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise ResponseError(f"{item!r}: {value!r} is not a number") from None
    return rates


def simulate_response(
    data_dir: Path,
    conn: duckdb.DuckDBPyConnection,
    snapshot: dt.date,
    response_rates: Mapping[str, float],
    seed: int = 42,
    exports_dir: Path | None = None,
    window_days: int = SHORT_WINDOW_DAYS,
) -> ResponseSummary:
    """Write the campaign orders of `snapshot` under `data_dir/landing` and their truth to ground_truth.

    `response_rates` maps action segments to the probability that a reached customer of
    the segment places a campaign order; segments left out do not respond.
    `exports_dir` defaults to `data_dir/exports`.
    """
    data_dir = Path(data_dir)
    landing, truth_dir = data_dir / "landing", data_dir / "ground_truth"
    exports_dir = Path(exports_dir) if exports_dir is not None else data_dir / "exports"
    window = [snapshot + dt.timedelta(days=d) for d in range(window_days)]
    _check_period(truth_dir, window)
    members = _members(conn, snapshot)
    unknown = sorted(set(response_rates) - set(members["action_segment"]))
    if unknown:
        raise ResponseError(
            f"response rates name segments nobody is in at {snapshot}: {', '.join(unknown)} "
            f"(segments: {', '.join(sorted(set(members['action_segment'])))})"
        )
    bad = {k: v for k, v in response_rates.items() if not 0 <= v <= 1}
    if bad:
        raise ResponseError(f"response rates must be probabilities in [0, 1]: {bad}")

    members["reached"] = members["customer_key"].isin(_marketing_members(exports_dir, snapshot))
    members["rate"] = members["action_segment"].map(dict(response_rates)).fillna(0.0)
    members = members.merge(_order_targets(conn, truth_dir), on="customer_key", how="left")
    # Drawn for every reached customer whatever the rates, so a higher rate only adds responders.
    rng = np.random.default_rng([seed, snapshot.toordinal(), zlib.crc32(b"campaign-response")])
    reached = members[members["reached"]].reset_index(drop=True)
    n = len(reached)
    draws = pd.DataFrame(
        {
            "respond": rng.random(n),
            "delay": np.minimum(
                _truncated_exponential(rng.random(n), MEAN_RESPONSE_DELAY_DAYS, window_days),
                window_days - 1e-9,
            ),
            "second": rng.integers(OPEN_HOURS[0] * 3600, OPEN_HOURS[1] * 3600, n),
            "value": rng.lognormal(-(ORDER_VALUE_SIGMA**2) / 2, ORDER_VALUE_SIGMA, n),
            "category": rng.choice(len(CATEGORIES), n, p=_category_shares()),
            "cost_noise": rng.uniform(0.9, 1.1, n),
            "items": rng.poisson(1.0, n),
        }
    )
    orders = pd.concat([reached, draws], axis=1)
    orders = orders[orders["respond"] < orders["rate"]].reset_index(drop=True)
    orders = _order_rows(orders, snapshot)

    files = _write_campaign_files(landing, orders, snapshot, window)
    baseline = _baseline_buyers(conn, landing, snapshot, window)
    segments = _true_effects(members, orders, baseline, response_rates)
    _record_truth(
        truth_dir / UPLIFT_FILE, snapshot, window_days, seed, exports_dir, files, data_dir, segments
    )
    return ResponseSummary(
        snapshot=snapshot, window_days=window_days, orders=len(orders), files=files, segments=segments
    )


# --------------------------------------------------------------------------- inputs


def _check_period(truth_dir: Path, window: list[dt.date]) -> None:
    """Campaign orders only mean something next to the generator's own days (the baseline)."""
    params = truth_dir / "params.json"
    if not params.exists():
        raise ResponseError(f"{params} is missing: run `segmentation-platform generate` first")
    generation = json.loads(params.read_text())["generation"]
    start, end = dt.date.fromisoformat(generation["start"]), dt.date.fromisoformat(generation["end"])
    if window[0] < start or window[-1] > end:
        raise ResponseError(
            f"the outcome window {window[0]} to {window[-1]} is not inside the generated period "
            f"{start} to {end}: generate through at least {window[-1]}"
        )


def _members(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> pd.DataFrame:
    """Everyone assigned at the snapshot and whether activation held them out (any experiment)."""
    for table, stage in ((ASSIGNMENTS_TABLE, "segments"), (HOLDOUTS_TABLE, "activation/holdouts")):
        if not warehouse.table_exists(conn, table):
            raise ResponseError(f"{table} does not exist: materialize {stage} for {snapshot} first")
    frame = conn.execute(
        f"""
        SELECT a.customer_key, a.action_segment,
            EXISTS (SELECT 1 FROM {HOLDOUTS_TABLE} h
                    WHERE h.customer_key = a.customer_key AND h.snapshot_date = a.snapshot_date) AS held_out
        FROM {ASSIGNMENTS_TABLE} a WHERE a.snapshot_date = ? ORDER BY a.customer_key
        """,
        [snapshot],
    ).df()
    if frame.empty:
        raise ResponseError(f"{ASSIGNMENTS_TABLE} has nobody at {snapshot}: materialize that snapshot first")
    return frame


def _marketing_members(exports_dir: Path, snapshot: dt.date) -> set[str]:
    """Customer keys every marketing destination was sent for the snapshot, from its committed member list."""
    reached: set[str] = set()
    found = []
    for manifest_path in sorted(Path(exports_dir).glob("*/manifest.json")):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("purpose") != "marketing":
            continue
        for entry in manifest.get("history", []):
            if entry["snapshot_date"] == snapshot.isoformat():
                state = manifest_path.parent / entry["state_file"]
                for line in state.read_text(encoding="utf-8").splitlines():
                    reached.add(json.loads(line)["customer_key"])
                found.append(manifest["destination"])
                break
    if not found:
        raise ResponseError(
            f"no marketing destination under {exports_dir} holds an export of {snapshot}: "
            "materialize activation/exports for it first (an export older than a destination's "
            "retain_exports history is gone)"
        )
    return reached


def _order_targets(conn: duckdb.DuckDBPyConnection, truth_dir: Path) -> pd.DataFrame:
    """Per customer key: the shop account or loyalty card an order of theirs would carry, and
    the true mean order value of the person behind the key (the majority person if identity
    resolution merged several)."""
    if not warehouse.table_exists(conn, KEY_MAP_TABLE):
        raise ResponseError(f"{KEY_MAP_TABLE} does not exist: run identity resolution first")
    conn.register("_truth_identity", pl.read_parquet(truth_dir / "identity.parquet").to_arrow())
    conn.register(
        "_truth_persons",
        pl.read_parquet(truth_dir / "persons.parquet")
        .select("person_id", "expected_order_value", "home_store_id")
        .to_arrow(),
    )
    try:
        return conn.execute(
            f"""
            WITH people AS (
                SELECT m.customer_key, t.person_id, count(*) AS records
                FROM {KEY_MAP_TABLE} m JOIN _truth_identity t USING (source, source_id)
                GROUP BY ALL
            ),
            person AS (
                SELECT customer_key, arg_min(person_id, (-records, person_id)) AS person_id
                FROM people GROUP BY 1
            ),
            accounts AS (
                SELECT customer_key,
                    min(source_id) FILTER (WHERE source = 'web_orders') AS account_id,
                    min(source_id) FILTER (
                        WHERE source = 'pos_transactions' AND source_id NOT LIKE 'receipt:%'
                    ) AS loyalty_id
                FROM {KEY_MAP_TABLE} GROUP BY 1
            )
            SELECT a.customer_key, a.account_id, a.loyalty_id, p.person_id,
                coalesce(tp.expected_order_value, (SELECT avg(expected_order_value) FROM _truth_persons))
                    AS expected_order_value,
                coalesce(tp.home_store_id, '{DEFAULT_STORE}') AS store_id
            FROM accounts a
            LEFT JOIN person p USING (customer_key)
            LEFT JOIN _truth_persons tp USING (person_id)
            """
        ).df()
    finally:
        conn.unregister("_truth_identity")
        conn.unregister("_truth_persons")


def _category_shares() -> np.ndarray:
    shares = np.array([share for _, _, share in CATEGORIES])
    return shares / shares.sum()


def _truncated_exponential(u: np.ndarray, mean: float, limit: float) -> np.ndarray:
    """Inverse CDF of an exponential delay cut at `limit` days: every response falls in the window."""
    return -mean * np.log1p(-u * (1 - np.exp(-limit / mean)))


# --------------------------------------------------------------------------- orders


def _order_rows(orders: pd.DataFrame, snapshot: dt.date) -> pd.DataFrame:
    """Campaign orders with their landing columns: web if the customer has a shop account,
    else a store receipt on the loyalty card, else an anonymous receipt."""
    day = np.floor(orders["delay"].to_numpy()).astype(int)
    at = pd.Timestamp(snapshot) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(orders["second"], unit="s")
    amount = np.maximum(
        np.round(orders["expected_order_value"].to_numpy() * orders["value"].to_numpy(), 2), 1.0
    )
    margin = np.array([m for _, m, _ in CATEGORIES])[orders["category"].to_numpy()]
    orders = orders.assign(
        day=[snapshot + dt.timedelta(days=int(d)) for d in day],
        at=at.dt.strftime("%Y-%m-%d %H:%M:%S"),
        amount=amount,
        cost=np.round(amount * (1 - margin) * orders["cost_noise"].to_numpy(), 2),
        category_name=[CATEGORIES[c][0] for c in orders["category"]],
        source=np.where(orders["account_id"].notna(), WEB_ORDERS.name, POS_TRANSACTIONS.name),
        attributed=orders["account_id"].notna() | orders["loyalty_id"].notna(),
    )
    orders = orders.sort_values(["at", "customer_key"], ignore_index=True)
    stamp = snapshot.strftime("%Y%m%d")
    orders["order_id"] = [f"CMP{stamp}-{i + 1:06d}" for i in range(len(orders))]
    return orders


def _write_campaign_files(
    landing: Path, orders: pd.DataFrame, snapshot: dt.date, window: list[dt.date]
) -> list[Path]:
    """Replace this snapshot's campaign files: one per source and day that has campaign orders."""
    suffix = f"_campaign-{snapshot.isoformat()}.csv"
    for contract in _SOURCES:
        folder = landing / contract.name
        if folder.is_dir():
            for stale in folder.glob(f"*{suffix}"):
                stale.unlink()
    written = []
    for contract in _SOURCES:
        rows = orders[orders["source"] == contract.name]
        for day, group in rows.groupby("day", sort=True):
            frame = _landing_frame(contract, group)
            path = landing / contract.name / campaign_file_name(day, snapshot)
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.write_csv(path)
            written.append(path)
    return sorted(written)


def _landing_frame(contract: SourceContract, orders: pd.DataFrame) -> pl.DataFrame:
    """Every contract column as text, empty where a campaign order has nothing to say (no PII)."""
    money = [f"{v:.2f}" for v in orders["amount"]]
    values = {
        "amount": money,
        "cost": [f"{v:.2f}" for v in orders["cost"]],
        "discount": ["0.00"] * len(orders),
        "items": [str(1 + int(v)) for v in orders["items"]],
        "category": list(orders["category_name"]),
    }
    if contract is WEB_ORDERS:
        values |= {
            "order_id": list(orders["order_id"]),
            "account_id": list(orders["account_id"]),
            "ordered_at": list(orders["at"]),
        }
    else:
        values |= {
            "receipt_id": list(orders["order_id"]),
            "store_id": list(orders["store_id"]),
            "purchased_at": list(orders["at"]),
            "loyalty_id": [v if isinstance(v, str) else None for v in orders["loyalty_id"]],
        }
    return pl.DataFrame(
        {c: pl.Series(c, values.get(c, [None] * len(orders)), dtype=pl.String) for c in contract.column_names}
    )


# --------------------------------------------------------------------------- truth


def _baseline_buyers(
    conn: duckdb.DuckDBPyConnection, landing: Path, snapshot: dt.date, window: list[dt.date]
) -> set[str]:
    """Customer keys with an identified purchase in the window without this campaign: the
    other landing files of those days (other snapshots' campaigns included), parsed by
    ingestion and matched to keys as measurement does."""
    campaign = f"_campaign-{snapshot.isoformat()}.csv"
    start, end = dt.datetime.combine(window[0], dt.time()), dt.datetime.combine(window[-1], dt.time())
    end += dt.timedelta(days=1)
    buyers: set[str] = set()
    for contract in _SOURCES:
        files = {
            day: [
                p
                for p in ingestion.landing_files(landing, contract.name, day)
                if not p.name.endswith(campaign)
            ]
            for day in window
        }
        files = {day: paths for day, paths in files.items() if paths}
        if not files:
            continue
        accepted = ingestion.parse_landing_files(contract, files, dt.datetime(2000, 1, 1), landing).accepted
        conn.register("_baseline", accepted.to_arrow())
        try:
            buyers.update(
                key
                for (key,) in conn.execute(
                    f"""
                    SELECT DISTINCT m.customer_key
                    FROM (SELECT CAST({contract.person_ref} AS VARCHAR) AS _person, {contract.event_time} AS at
                          FROM _baseline) r
                    JOIN {KEY_MAP_TABLE} m ON m.source = '{contract.name}' AND m.source_id = r._person
                    WHERE r.at >= ? AND r.at < ?
                    """,
                    [start, end],
                ).fetchall()
            )
        finally:
            conn.unregister("_baseline")
    return buyers


def _true_effects(
    members: pd.DataFrame, orders: pd.DataFrame, baseline: set[str], rates: Mapping[str, float]
) -> dict[str, dict]:
    """Per segment, what the campaign added to each group, over the group's size.

    conversion_lift = incremental converters (attributed campaign order, no purchase of
    their own in the window) / treated - the same / held out; revenue_lift likewise with
    attributed campaign revenue. The held-out terms are zero unless a holdout leaked into an
    export. This is the expected value of measurement's treated-minus-holdout estimate.
    """
    attributed = orders[orders["attributed"]]
    per_customer = attributed.groupby("customer_key")["amount"].sum()
    members = members.assign(
        responded=members["customer_key"].isin(orders["customer_key"]),
        campaign_revenue=members["customer_key"].map(per_customer).fillna(0.0),
        incremental=members["customer_key"].isin(attributed["customer_key"])
        & ~members["customer_key"].isin(baseline),
    )
    segments = {}
    for name, group in members.groupby("action_segment", sort=True):
        treated, held = group[~group["held_out"]], group[group["held_out"]]

        def per_head(column: str, rows: pd.DataFrame) -> float:
            return float(rows[column].sum()) / len(rows) if len(rows) else 0.0

        segments[name] = {
            "response_rate": float(rates.get(name, 0.0)),
            "treatment_customers": len(treated),
            "holdout_customers": len(held),
            "reached_treated": int(treated["reached"].sum()),
            "leaked_holdouts": int(held["reached"].sum()),
            "responders": int(group["responded"].sum()),
            "unattributed_responders": int(
                (group["responded"] & group["account_id"].isna() & group["loyalty_id"].isna()).sum()
            ),
            "incremental_converters": int(treated["incremental"].sum()),
            "campaign_revenue": round(float(treated["campaign_revenue"].sum()), 2),
            "conversion_lift": per_head("incremental", treated) - per_head("incremental", held),
            "revenue_lift": per_head("campaign_revenue", treated) - per_head("campaign_revenue", held),
        }
    return segments


def _record_truth(
    path: Path,
    snapshot: dt.date,
    window_days: int,
    seed: int,
    exports_dir: Path,
    files: list[Path],
    data_dir: Path,
    segments: dict[str, dict],
) -> None:
    """One entry per snapshot in uplift.json; other snapshots' campaigns are kept."""
    recorded = json.loads(path.read_text()) if path.exists() else {}
    campaigns = recorded.get("campaigns", {})
    campaigns[snapshot.isoformat()] = {
        "snapshot_date": snapshot.isoformat(),
        "outcome_window_days": window_days,
        "window_end": (snapshot + dt.timedelta(days=window_days)).isoformat(),
        "seed": seed,
        "files": [str(p.relative_to(data_dir)) for p in files],
        "segments": segments,
    }
    document = {
        "definition": (
            "Per campaign (keyed by snapshot) and action segment: conversion_lift and revenue_lift are the "
            "campaign's incremental converters and attributed revenue in the outcome window per treated "
            "customer minus the same per held-out customer (non-zero only for leaked holdouts): the expected "
            "treated-minus-holdout difference of measurement.lift. Reached = member of a marketing export of "
            "the snapshot; a reached customer responds with response_rate; an order without a shop account "
            "or loyalty card is anonymous (unattributed_responders)."
        ),
        "campaigns": dict(sorted(campaigns.items())),
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
