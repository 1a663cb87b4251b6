"""Who an export reaches: the activation frame, consent, unsubscribe, suppression and holdout rules, and the per-member diff against the last export."""

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.activation._common import (
    _FIELD_SOURCES,
    _IDENTITY_FIELDS,
    _UNSUBSCRIBE_COLUMNS,
    APPROVED_USAGE_FIELD,
    ASSIGNMENTS_TABLE,
    CUSTOMERS_TABLE,
    PROFILES_TABLE,
    ActivationError,
)
from segmentation_platform.core.activation._config import (
    FIELD_CATALOG,
    PLAYBOOK_PREFIX,
    Destination,
)
from segmentation_platform.core.activation._suppression import SuppressionList, _email, _phone, sha256_hex

# --------------------------------------------------------------------------- audience


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return warehouse.table_columns(conn, table) if warehouse.table_exists(conn, table) else []


def _text_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Descriptive (VARCHAR) columns: the playbook, not the profile's statistics."""
    return [
        column for column, sql_type in warehouse.column_types(conn, table).items() if sql_type == "VARCHAR"
    ]


def load_activation_frame(
    conn: duckdb.DuckDBPyConnection, snapshot: dt.date
) -> tuple[pd.DataFrame, list[str]]:
    """One row per customer assigned at `snapshot`, with every catalog field that exists.

    Consent and contact points come from the *current* golden record, not as of the
    snapshot: a customer who opted out yesterday must not be mailed today. Returns notes
    on missing inputs (never PII) alongside the frame.
    """
    if not warehouse.table_exists(conn, ASSIGNMENTS_TABLE):
        raise ActivationError(f"{ASSIGNMENTS_TABLE} does not exist: materialize the segments first")
    notes: list[str] = []
    select = ["a.customer_key"]
    joins = []
    taken = {"customer_key"}
    for alias, table in _FIELD_SOURCES:
        columns = _columns(conn, table)
        if not columns:
            notes.append(f"{table} is missing: its fields export as empty")
            continue
        if alias != "a":
            joins.append(
                f"LEFT JOIN {table} {alias} ON {alias}.customer_key = a.customer_key "
                f"AND {alias}.snapshot_date = a.snapshot_date"
            )
        for name in FIELD_CATALOG:
            if name in columns and name not in taken:
                select.append(f"{alias}.{warehouse.quote(name)}")
                taken.add(name)
    profile_columns = _columns(conn, PROFILES_TABLE)
    text_columns = _text_columns(conn, PROFILES_TABLE)
    if profile_columns:
        condition = ["p.action_segment = a.action_segment"]
        condition += [f"p.{c} = a.{c}" for c in ("snapshot_date", "scheme_version") if c in profile_columns]
        joins.append(f"LEFT JOIN {PROFILES_TABLE} p ON {' AND '.join(condition)}")
        for column in text_columns:
            if column in ("action_segment", "snapshot_date", "scheme_version"):
                continue
            alias = column if column.startswith(PLAYBOOK_PREFIX) else PLAYBOOK_PREFIX + column
            select.append(f"p.{warehouse.quote(column)} AS {warehouse.quote(alias)}")
    else:
        notes.append(f"{PROFILES_TABLE} is missing: playbook fields export as empty")
    customer_columns = _columns(conn, CUSTOMERS_TABLE)
    if customer_columns:
        joins.append(f"LEFT JOIN {CUSTOMERS_TABLE} c ON c.customer_key = a.customer_key")
        for name in _IDENTITY_FIELDS:
            select.append(f"c.{name}" if name in customer_columns else f"NULL AS {name}")
        flags = [f"c.{name}" for name in _UNSUBSCRIBE_COLUMNS if name in customer_columns]
        select.append(
            f"coalesce({', '.join(flags)}, false) AS unsubscribed" if flags else "false AS unsubscribed"
        )
    else:
        notes.append(f"{CUSTOMERS_TABLE} is missing: nobody has consent, marketing exports are empty")
        select += [f"NULL AS {name}" for name in _IDENTITY_FIELDS] + ["false AS unsubscribed"]
    frame = conn.execute(
        f"SELECT {', '.join(select)} FROM {ASSIGNMENTS_TABLE} a {' '.join(joins)} "
        "WHERE a.snapshot_date = ? ORDER BY a.customer_key",
        [snapshot],
    ).df()
    if frame["customer_key"].duplicated().any():
        raise ActivationError(f"{ASSIGNMENTS_TABLE} has more than one row per customer at {snapshot}")
    email = frame["email"].map(_email)
    phone = frame["phone"].map(_phone)
    frame["email_sha256"] = email.map(sha256_hex)
    frame["phone_sha256"] = phone.map(sha256_hex)
    return frame, notes


def _usage_list(listed: Any) -> set[str]:
    """`approved_usage` as segments.profiles stores it: comma-separated names."""
    if not isinstance(listed, str):
        return set()
    return {part.strip() for part in listed.split(",") if part.strip()}


@dataclass
class Audience:
    """Rows a destination receives (customer_key first, then its fields) and who was kept out, and why."""

    rows: pd.DataFrame
    excluded: dict[str, int]


def select_audience(
    frame: pd.DataFrame,
    destination: Destination,
    suppression: SuppressionList,
    held_out: Iterable[str],
) -> Audience:
    """Apply segment filter, holdouts, consent, unsubscribes and suppression, in that order.

    For marketing, a contact point is only used through the channel it was consented
    for: an email (or its hash) needs email consent, a phone needs SMS consent; a row
    left with no usable contact point is dropped.
    """
    missing = [f for f in destination.fields if f not in frame.columns]
    if missing:
        raise ActivationError(
            f"destination {destination.name!r}: fields {', '.join(missing)} are not available "
            "(playbook_<column> must be a column of segments.profiles)"
        )
    excluded = dict.fromkeys(
        ("not_approved", "holdout", "no_consent", "unsubscribed", "suppressed", "no_contact"), 0
    )
    rows = frame
    if destination.segments is not None:
        rows = rows[rows["action_segment"].isin(destination.segments)]
    if destination.usage is not None:
        if APPROVED_USAGE_FIELD not in rows.columns:
            raise ActivationError(
                f"destination {destination.name!r}: usage {destination.usage!r} cannot be verified, "
                f"segments.profiles has no approved_usage column"
            )
        approved = rows[APPROVED_USAGE_FIELD].map(lambda listed: destination.usage in _usage_list(listed))
        excluded["not_approved"] = int((~approved).sum())
        rows = rows[approved]
    if not destination.include_holdouts:
        is_held = rows["customer_key"].isin(set(held_out))
        excluded["holdout"] = int(is_held.sum())
        rows = rows[~is_held]
    if destination.is_marketing:
        email_ok = rows["email_consent"].eq(True)
        sms_ok = rows["sms_consent"].eq(True)
        consented = {"email": email_ok, "sms": sms_ok, "any": email_ok | sms_ok, "all": email_ok & sms_ok}[
            destination.consent
        ]
        excluded["no_consent"] = int((~consented).sum())
        rows = rows[consented]
        unsubscribed = rows["unsubscribed"].eq(True)
        excluded["unsubscribed"] = int(unsubscribed.sum())
        rows = rows[~unsubscribed]
        suppressed = (
            rows["email_sha256"].isin(suppression.email_hashes)
            | rows["phone_sha256"].isin(suppression.phone_hashes)
            | rows["customer_key"].isin(suppression.customer_keys)
        )
        excluded["suppressed"] = int(suppressed.sum())
        rows = rows[~suppressed].copy()
        for name in ("email", "email_sha256"):
            rows[name] = rows[name].where(rows["email_consent"].eq(True), None)
        for name in ("phone", "phone_sha256"):
            rows[name] = rows[name].where(rows["sms_consent"].eq(True), None)
    if destination.contact_fields:
        reachable = rows[list(destination.contact_fields)].notna().any(axis=1)
        excluded["no_contact"] = int((~reachable).sum())
        rows = rows[reachable]
    columns = ["customer_key", *[f for f in destination.fields if f != "customer_key"]]
    return Audience(rows=rows[columns].sort_values("customer_key", ignore_index=True), excluded=excluded)


# --------------------------------------------------------------------------- records and diffs


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.date().isoformat() if value == pd.Timestamp(value).normalize() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is pd.NA:
        return None
    return value


def audience_records(rows: pd.DataFrame, fields: Iterable[str]) -> dict[str, dict[str, Any]]:
    """customer_key -> the JSON-safe record the destination receives (only its fields)."""
    fields = list(fields)
    records = {}
    for row in rows.itertuples(index=False):
        values = row._asdict()
        records[values["customer_key"]] = {f: _json_value(values[f]) for f in fields}
    return records


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class SyncDiff:
    adds: list[str]
    updates: list[str]
    removes: list[str]

    @property
    def is_empty(self) -> bool:
        return not (self.adds or self.updates or self.removes)


def diff_members(previous: dict[str, str], current: dict[str, str]) -> SyncDiff:
    """Compare customer_key -> record hash maps of the last successful export and now."""
    return SyncDiff(
        adds=sorted(k for k in current if k not in previous),
        updates=sorted(k for k in current if k in previous and previous[k] != current[k]),
        removes=sorted(k for k in previous if k not in current),
    )
