"""The consent audit: re-reads every committed marketing and ad file of a run."""

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from segmentation_platform.core.activation._audience import _usage_list, load_activation_frame
from segmentation_platform.core.activation._common import APPROVED_USAGE_FIELD
from segmentation_platform.core.activation._config import (
    ActivationConfig,
    Destination,
)
from segmentation_platform.core.activation._exports import ExportResult
from segmentation_platform.core.activation._holdouts import compute_holdouts
from segmentation_platform.core.activation._suppression import (
    SuppressionList,
    _email,
    _phone,
    load_suppression_list,
)

# --------------------------------------------------------------------------- audit


def read_export_rows(path: Path, destination: Destination) -> list[dict]:
    """Rows of a committed export file, traits flattened, as strings/JSON values."""
    text = Path(path).read_text(encoding="utf-8")
    if destination.format == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    rows = []
    for line in text.splitlines():
        record = json.loads(line)
        rows.append({**{k: v for k, v in record.items() if k != "traits"}, **record.get("traits", {})})
    return rows


def audit_export(
    path: Path,
    destination: Destination,
    frame: pd.DataFrame,
    suppression: SuppressionList,
    held_out: Iterable[str],
) -> dict:
    """Independently re-check a committed file against the rules; counts and customer keys only, never PII.

    Every upserted row must belong to a customer who, right now, has the consent the
    destination needs, is not unsubscribed, suppressed or held out; an ad audience file
    must not contain any customer's raw email or phone anywhere in its text.
    """
    rows = [r for r in read_export_rows(path, destination) if r.get("_op") != "remove"]
    by_email = {h: k for h, k in zip(frame["email_sha256"], frame["customer_key"], strict=True) if h}
    by_phone = {h: k for h, k in zip(frame["phone_sha256"], frame["customer_key"], strict=True) if h}
    people = frame.set_index("customer_key")
    held = set(held_out)
    violations: dict[str, set[str]] = {}

    def flag(reason: str, key: str) -> None:
        violations.setdefault(reason, set()).add(key)

    for row in rows:
        keys = {
            row.get("customer_key"),
            by_email.get(row.get("email_sha256")),
            by_phone.get(row.get("phone_sha256")),
        }
        keys.discard(None)
        keys.discard("")
        if not keys:
            flag("row matches no known customer", "?")
        for key in keys:
            if key not in people.index:
                flag("customer not in this snapshot", key)
                continue
            person = people.loc[key]
            if key in held and not destination.include_holdouts:
                flag("held out", key)
            if destination.usage is not None and destination.usage not in _usage_list(
                person.get(APPROVED_USAGE_FIELD)
            ):
                flag(f"segment not approved for {destination.usage}", key)
            if not destination.is_marketing:
                continue
            email_ok, sms_ok = _is_true(person["email_consent"]), _is_true(person["sms_consent"])
            consent_ok = {
                "email": email_ok,
                "sms": sms_ok,
                "any": email_ok or sms_ok,
                "all": email_ok and sms_ok,
            }
            if not consent_ok[destination.consent]:
                flag("no consent", key)
            if _is_true(person["unsubscribed"]):
                flag("unsubscribed", key)
            if (
                person["email_sha256"] in suppression.email_hashes
                or person["phone_sha256"] in suppression.phone_hashes
                or key in suppression.customer_keys
            ):
                flag("suppressed", key)
    if destination.type == "ad_audience":
        tokens = set(re.split(r"[,\n\r\":{}\[\]]+", Path(path).read_text(encoding="utf-8")))
        header = set(rows[0]) if rows else set()
        for name in header & {"email", "phone", "first_name", "last_name"}:
            flag(f"raw PII column {name}", "*")
        for row in frame.itertuples(index=False):
            raw_values = {row.email, row.phone, _email(row.email), _phone(row.phone)}
            raw_values |= {v.strip() for v in raw_values if isinstance(v, str)}
            if tokens & {v for v in raw_values if isinstance(v, str) and v}:
                flag("raw email or phone in ad audience", row.customer_key)
    return {
        "destination": destination.name,
        "file": Path(path).name,
        "rows_checked": len(rows),
        "violations": {reason: len(keys) for reason, keys in sorted(violations.items())},
        "example_customer_keys": sorted({k for keys in violations.values() for k in keys})[:5],
    }


def _is_true(value: Any) -> bool:
    return bool(pd.notna(value) and value)


def audit_run(
    conn: duckdb.DuckDBPyConnection,
    snapshot: dt.date,
    config: ActivationConfig,
    results: Iterable[ExportResult],
) -> list[dict]:
    """`audit_export` for every file this run committed, against current consent and holdouts."""
    committed = [r for r in results if r.status in ("success", "unchanged") and r.path]
    if not committed:
        return []
    frame, _ = load_activation_frame(conn, snapshot)
    suppression = load_suppression_list(config.suppression_path)
    held_out = set(compute_holdouts(conn, snapshot, config)["customer_key"])
    destinations = {d.name: d for d in config.destinations}
    return [
        {"snapshot_date": snapshot.isoformat()}
        | audit_export(Path(r.path), destinations[r.destination], frame, suppression, held_out)
        for r in committed
    ]
