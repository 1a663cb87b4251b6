"""Activation: turn one snapshot's segments into files (and HTTP batches) marketing tools act on.

Three promises drive this module. People who did not consent, unsubscribed or asked to be
suppressed never reach a marketing or ad destination, and ad platforms only ever see
SHA-256 hashes. A holdout of every action segment is kept out of activation so the
platform can prove its segments pay. And a destination never sees a half-written export:
each export is written to a temporary file, renamed into place, and committed by
atomically replacing one manifest, so a crash at any moment leaves the previous export,
its manifest and the delta baseline exactly as they were.

Pure Python + DuckDB; no Dagster.
"""

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.activation._config import (
    FIELD_CATALOG,
    PLAYBOOK_PREFIX,
    ActivationConfig,
    Destination,
    Experiment,
    WebhookSettings,
)

ASSIGNMENTS_TABLE = "segments.assignments"
PROFILES_TABLE = "segments.profiles"
CUSTOMERS_TABLE = "identity.customers"
HOLDOUTS_TABLE = "activation.holdouts"
EXPORTS_TABLE = "activation.exports"
MANIFEST_NAME = "manifest.json"
APPROVED_USAGE_FIELD = PLAYBOOK_PREFIX + "approved_usage"

HOLDOUT_COLUMNS = {
    "snapshot_date": "DATE",
    "experiment": "VARCHAR",
    "customer_key": "VARCHAR",
    "action_segment": "VARCHAR",
    "bucket": "DOUBLE",
    "share": "DOUBLE",
    "held_out_since": "DATE",
}
EXPORT_LOG_COLUMNS = {
    "export_id": "VARCHAR",
    "snapshot_date": "DATE",
    "destination": "VARCHAR",
    "destination_type": "VARCHAR",
    "purpose": "VARCHAR",
    "mode": "VARCHAR",
    "scheme_version": "VARCHAR",
    "status": "VARCHAR",
    "rows": "BIGINT",
    "members": "BIGINT",
    "adds": "BIGINT",
    "updates": "BIGINT",
    "removes": "BIGINT",
    "excluded_holdout": "BIGINT",
    "excluded_no_consent": "BIGINT",
    "excluded_unsubscribed": "BIGINT",
    "excluded_suppressed": "BIGINT",
    "excluded_no_contact": "BIGINT",
    "excluded_not_approved": "BIGINT",
    "webhook_batches": "BIGINT",
    "webhook_attempts": "BIGINT",
    "path": "VARCHAR",
    "manifest_path": "VARCHAR",
    "sha256": "VARCHAR",
    "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
    "message": "VARCHAR",
}

# Where each catalog field comes from, first table that has the column wins.
_FIELD_SOURCES = (
    ("a", ASSIGNMENTS_TABLE),
    ("clv", "models.clv_scores"),
    ("churn", "models.churn_scores"),
    ("rfm", "models.rfm_scores"),
)
_IDENTITY_FIELDS = ("email", "phone", "first_name", "last_name", "email_consent", "sms_consent")
_UNSUBSCRIBE_COLUMNS = ("unsubscribed", "email_unsubscribed")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ActivationError(RuntimeError):
    """An export could not be made; the previous export of the destination is untouched."""


class WebhookDeliveryError(ActivationError):
    """The endpoint kept failing: the export was not marked done and stays to be re-sent."""


# --------------------------------------------------------------------------- hashing


def normalize_email(value: Any) -> str | None:
    """Trimmed and lower-cased: the normalization ad platforms hash."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if "@" in email else None


def normalize_phone(value: Any) -> str | None:
    """E.164 with separators removed; anything else cannot be matched and is dropped."""
    if not isinstance(value, str):
        return None
    phone = re.sub(r"[\s\-().]", "", value)
    return phone if _E164.match(phone) else None


def sha256_hex(value: str | None) -> str | None:
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value is not None else None


# --------------------------------------------------------------------------- suppression


@dataclass(frozen=True)
class SuppressionList:
    """Do-not-market entries, kept only as hashes so the list itself holds no raw PII in memory dumps."""

    email_hashes: frozenset[str] = frozenset()
    phone_hashes: frozenset[str] = frozenset()
    customer_keys: frozenset[str] = frozenset()
    source: str = "(none)"

    def __len__(self) -> int:
        return len(self.email_hashes) + len(self.phone_hashes) + len(self.customer_keys)


_SUPPRESSION_COLUMNS = ("email", "email_sha256", "phone", "phone_sha256", "customer_key")


def load_suppression_list(path: Path | None) -> SuppressionList:
    """Read a CSV of emails (raw or SHA-256), phones (raw or SHA-256) and/or customer keys.

    A configured list that is missing is an error, not an empty list: silently exporting
    suppressed people is the failure this guards against. Lines starting with # are notes.
    """
    if path is None:
        return SuppressionList()
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ActivationError(f"suppression list {path}: cannot read ({error.strerror})") from error
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return SuppressionList(source=str(path))
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    known = [name for name in header if name in _SUPPRESSION_COLUMNS]
    if not known:
        raise ActivationError(
            f"suppression list {path}: line 1: header must name one of {', '.join(_SUPPRESSION_COLUMNS)}"
        )
    reader.fieldnames = header
    emails, phones, keys = set(), set(), set()
    for line_number, row in enumerate(reader, start=2):
        for column in known:
            value = (row.get(column) or "").strip()
            if not value:
                continue
            if column in ("email_sha256", "phone_sha256") or _SHA256_HEX.match(value):
                if not _SHA256_HEX.match(value):
                    raise ActivationError(
                        f"suppression list {path}: line {line_number}: {column} is not a SHA-256"
                    )
                (emails if column.startswith("email") else phones).add(value.lower())
            elif column == "email":
                emails.add(sha256_hex(normalize_email(value) or value.strip().lower()))
            elif column == "phone":
                phones.add(sha256_hex(normalize_phone(value) or value.strip()))
            else:
                keys.add(value)
    return SuppressionList(frozenset(emails), frozenset(phones), frozenset(keys), source=str(path))


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
        return pd.DataFrame({name: pd.Series(dtype="object") for name in HOLDOUT_COLUMNS})
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
        conn, HOLDOUTS_TABLE, frame, "snapshot_date", [snapshot], columns=HOLDOUT_COLUMNS
    )
    return frame


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
    email = frame["email"].map(normalize_email)
    phone = frame["phone"].map(normalize_phone)
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


# --------------------------------------------------------------------------- payloads


def _payload_records(
    destination: Destination,
    records: dict[str, dict],
    previous_records: dict[str, dict],
    diff: SyncDiff,
) -> list[dict]:
    """What the destination receives: every member (full) or the changes with an `_op` (delta)."""
    if destination.sync_mode == "full":
        return [records[k] for k in sorted(records)]
    upserts = sorted(diff.adds + diff.updates)
    return [{"_op": "upsert", **records[k]} for k in upserts] + [
        {"_op": "remove", **previous_records[k]} for k in diff.removes
    ]


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_lines(destination: Destination, payload: list[dict]) -> Iterator[bytes]:
    """The export file, line by line: CSV with a header, or one JSON object per line."""
    columns = (["_op"] if destination.sync_mode == "delta" else []) + list(destination.fields)
    if destination.format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        yield buffer.getvalue().encode()
        for record in payload:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([_csv_text(record.get(c)) for c in columns])
            yield buffer.getvalue().encode()
        return
    for record in payload:
        if destination.type == "cdp_traits_jsonl":
            traits = {k: v for k, v in record.items() if k not in ("customer_key", "_op")}
            line = {"customer_key": record["customer_key"], "traits": traits}
            if "_op" in record:
                line = {"_op": record["_op"], **line}
        else:
            line = record
        yield (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


# --------------------------------------------------------------------------- atomic files


@dataclass
class StagedFile:
    """A fully written, fsynced temporary file waiting to be renamed into place."""

    temp_path: Path
    sha256: str
    lines: int


def _write_lines(handle, lines: Iterable[bytes], digest) -> int:
    count = 0
    for line in lines:
        handle.write(line)
        digest.update(line)
        count += 1
    return count


def stage_file(folder: Path, final_name: str, lines: Iterable[bytes]) -> StagedFile:
    """Write to a temp file in the destination folder (same file system, so the rename is atomic)."""
    temp_path = folder / f".{final_name}.{uuid.uuid4().hex}.tmp"
    digest = hashlib.sha256()
    try:
        with open(temp_path, "xb") as handle:
            count = _write_lines(handle, lines, digest)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return StagedFile(temp_path=temp_path, sha256=digest.hexdigest(), lines=count)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path: Path, content: bytes) -> str:
    """Replace `path` with `content` so a reader sees the old or the new file, never a mix."""
    staged = stage_file(path.parent, path.name, [content])
    os.replace(staged.temp_path, path)
    _fsync_folder(path.parent)
    return staged.sha256


@contextlib.contextmanager
def destination_lock(folder: Path):
    """One export per destination at a time, across processes."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise ActivationError(f"another export to {folder.name!r} is running") from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(folder: Path) -> dict | None:
    """The last successful export of a destination, or None before the first one."""
    path = folder / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ActivationError(
            f"{path} is unreadable; restore it or delete the folder for a full resync"
        ) from error


def _read_state(folder: Path, manifest: dict | None) -> dict[str, dict]:
    if manifest is None:
        return {}
    path = folder / manifest["state_file"]
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ActivationError(f"{path}: cannot read the delta baseline ({error.strerror})") from error
    digest = hashlib.sha256(content).hexdigest()
    if digest != manifest["state_sha256"]:
        raise ActivationError(f"{path} does not match its manifest; delete the folder for a full resync")
    state = {}
    for line in content.decode("utf-8").splitlines():
        entry = json.loads(line)
        state[entry["customer_key"]] = entry["record"]
    return state


# --------------------------------------------------------------------------- webhook


@dataclass(frozen=True)
class WebhookBatch:
    number: int
    body: bytes
    idempotency_key: str


def webhook_batches(
    destination_name: str,
    snapshot: dt.date,
    scheme_version: str | None,
    mode: str,
    payload: list[dict],
    batch_size: int,
) -> list[WebhookBatch]:
    """Deterministic JSON batches, each with a key a receiver can de-duplicate retries by."""
    chunks = [payload[i : i + batch_size] for i in range(0, len(payload), batch_size)]
    batches = []
    for number, chunk in enumerate(chunks, start=1):
        body = json.dumps(
            {
                "destination": destination_name,
                "snapshot_date": snapshot.isoformat(),
                "scheme_version": scheme_version,
                "mode": mode,
                "batch": number,
                "batches": len(chunks),
                "records": chunk,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        key = hashlib.sha256(f"{destination_name}\n{snapshot.isoformat()}\n".encode() + body).hexdigest()
        batches.append(WebhookBatch(number=number, body=body, idempotency_key=key))
    return batches


def _http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """HTTP status of a POST; network failures raise OSError (URLError is one)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def redacted_url(url: str) -> str:
    """Scheme, host and port only: paths and queries often carry tokens."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


@dataclass
class DeliveryReport:
    batches: int = 0
    attempts: int = 0


def deliver_webhook(
    destination_name: str,
    settings: WebhookSettings,
    batches: list[WebhookBatch],
    post: Callable[[str, bytes, dict[str, str], float], int] = _http_post,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """POST every batch, retrying network errors, 408, 429 and 5xx with exponential backoff."""
    url = settings.resolved_url()
    if not url:
        raise WebhookDeliveryError(
            f"destination {destination_name!r}: no webhook URL (set `url` or the {settings.url_env} variable)"
        )
    headers = {"Content-Type": "application/json", "User-Agent": "segmentation-platform"}
    if settings.auth_token_env:
        token = os.environ.get(settings.auth_token_env)
        if not token:
            raise WebhookDeliveryError(
                f"destination {destination_name!r}: environment variable {settings.auth_token_env} is not set"
            )
        headers["Authorization"] = f"Bearer {token}"
    report = DeliveryReport()
    for batch in batches:
        last_problem = ""
        for attempt in range(1, settings.max_attempts + 1):
            report.attempts += 1
            batch_headers = headers | {
                "Idempotency-Key": batch.idempotency_key,
                "X-Batch": f"{batch.number}/{len(batches)}",
            }
            try:
                status = post(url, batch.body, batch_headers, settings.timeout_seconds)
            except OSError as error:
                status, last_problem = None, f"{type(error).__name__}: {getattr(error, 'reason', error)}"
            if status is not None and 200 <= status < 300:
                break
            if status is not None:
                last_problem = f"HTTP {status}"
                if status < 500 and status not in (408, 429):
                    raise WebhookDeliveryError(
                        f"destination {destination_name!r}: {redacted_url(url)} refused batch "
                        f"{batch.number}/{len(batches)} with {last_problem} (not retried); "
                        "the export was not marked done"
                    )
            if attempt < settings.max_attempts:
                sleep(min(settings.backoff_seconds * 2 ** (attempt - 1), settings.max_backoff_seconds))
        else:
            raise WebhookDeliveryError(
                f"destination {destination_name!r}: {redacted_url(url)} failed batch {batch.number}/{len(batches)} "
                f"after {settings.max_attempts} attempts (last: {last_problem}); the export was not marked done, "
                f"{report.batches} earlier batch(es) were delivered and will be re-sent with the same idempotency keys"
            )
        report.batches += 1
    return report


# --------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    """One row of `activation.exports`."""

    export_id: str
    snapshot_date: dt.date
    destination: str
    destination_type: str
    purpose: str
    mode: str
    scheme_version: str | None
    status: str  # success | unchanged | failed | skipped
    rows: int = 0
    members: int = 0
    adds: int = 0
    updates: int = 0
    removes: int = 0
    excluded_holdout: int = 0
    excluded_no_consent: int = 0
    excluded_unsubscribed: int = 0
    excluded_suppressed: int = 0
    excluded_no_contact: int = 0
    excluded_not_approved: int = 0
    webhook_batches: int = 0
    webhook_attempts: int = 0
    path: str | None = None
    manifest_path: str | None = None
    sha256: str | None = None
    started_at: dt.datetime = field(default_factory=lambda: _now())
    finished_at: dt.datetime | None = None
    message: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def export_destination(
    destination: Destination,
    audience: Audience,
    snapshot: dt.date,
    scheme_version: str | None,
    exports_dir: Path,
    post: Callable[[str, bytes, dict[str, str], float], int] = _http_post,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportResult:
    """Write (and for a webhook, deliver) one export; commit it by replacing the manifest.

    Raises ActivationError (the previous export stays the committed one) on failure.
    A snapshot older than the one the destination holds is skipped, never rolled back to;
    one the destination already holds with identical content is not re-sent ("unchanged").
    """
    folder = Path(exports_dir) / destination.name
    result = ExportResult(
        export_id=uuid.uuid4().hex,
        snapshot_date=snapshot,
        destination=destination.name,
        destination_type=destination.type,
        purpose=destination.purpose,
        mode=destination.sync_mode,
        scheme_version=scheme_version,
        status="failed",
        **{f"excluded_{reason}": count for reason, count in audience.excluded.items()},
    )
    with destination_lock(folder):
        previous = read_manifest(folder)
        if previous is not None and dt.date.fromisoformat(previous["snapshot_date"]) > snapshot:
            result.status = "skipped"
            result.message = f"destination already holds the newer snapshot {previous['snapshot_date']}"
            result.finished_at = _now()
            return result
        previous_records = _read_state(folder, previous)
        records = audience_records(audience.rows, destination.fields)
        if _already_holds(folder, previous, destination, snapshot, scheme_version, records):
            return _unchanged(result, folder, previous)
        hashes = {k: record_hash(r) for k, r in records.items()}
        diff = diff_members({k: record_hash(r) for k, r in previous_records.items()}, hashes)
        payload = _payload_records(destination, records, previous_records, diff)
        extension = "jsonl" if destination.format == "jsonl" else "csv"
        stem = f"{destination.name}_{snapshot.isoformat()}_{destination.sync_mode}"
        staged = stage_file(folder, f"{stem}.{extension}", render_lines(destination, payload))
        staged_state = None
        try:
            staged_state = stage_file(folder, f".state_{snapshot.isoformat()}.jsonl", _state_lines(records))
            if destination.type == "webhook":
                batches = webhook_batches(
                    destination.name,
                    snapshot,
                    scheme_version,
                    destination.sync_mode,
                    payload,
                    destination.webhook.batch_size,
                )
                delivery = deliver_webhook(
                    destination.name, destination.webhook, batches, post=post, sleep=sleep
                )
                result.webhook_batches, result.webhook_attempts = delivery.batches, delivery.attempts
            payload_name = f"{stem}_{staged.sha256[:12]}.{extension}"
            state_name = f".state_{snapshot.isoformat()}_{staged_state.sha256[:12]}.jsonl"
            os.replace(staged.temp_path, folder / payload_name)
            os.replace(staged_state.temp_path, folder / state_name)
            _fsync_folder(folder)
            finished = _now()
            entry = {
                "export_id": result.export_id,
                "snapshot_date": snapshot.isoformat(),
                "mode": destination.sync_mode,
                "file": payload_name,
                "sha256": staged.sha256,
                "state_file": state_name,
                "state_sha256": staged_state.sha256,
                "exported_at": finished.isoformat(timespec="seconds"),
            }
            history = [entry] + [h for h in (previous or {}).get("history", []) if h["file"] != payload_name]
            manifest = {
                "destination": destination.name,
                "type": destination.type,
                "purpose": destination.purpose,
                "format": destination.format,
                "fields": list(destination.fields),
                "scheme_version": scheme_version,
                "rows": len(payload),
                "members": len(records),
                "adds": len(diff.adds),
                "updates": len(diff.updates),
                "removes": len(diff.removes),
                **entry,
                "history": history[: destination.retain_exports],
            }
            # The commit point: until this rename, the previous manifest names the current export.
            write_atomically(folder / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
        except BaseException:
            staged.temp_path.unlink(missing_ok=True)
            if staged_state is not None:
                staged_state.temp_path.unlink(missing_ok=True)
            raise
        _remove_unreferenced(folder, manifest)
    result.status = "success"
    result.rows, result.members = len(payload), len(records)
    result.adds, result.updates, result.removes = len(diff.adds), len(diff.updates), len(diff.removes)
    result.path = str(folder / payload_name)
    result.manifest_path = str(folder / MANIFEST_NAME)
    result.sha256 = staged.sha256
    result.finished_at = finished
    if diff.is_empty and destination.sync_mode == "delta":
        result.message = "no changes since the last successful export"
    return result


def _state_lines(records: dict[str, dict[str, Any]]) -> Iterator[bytes]:
    """The delta baseline file: one record per customer, sorted, so equal audiences give equal bytes."""
    for key in sorted(records):
        yield (
            json.dumps({"customer_key": key, "record": records[key]}, separators=(",", ":")) + "\n"
        ).encode()


def _already_holds(
    folder: Path,
    previous: dict | None,
    destination: Destination,
    snapshot: dt.date,
    scheme_version: str | None,
    records: dict[str, dict[str, Any]],
) -> bool:
    """The committed export is this snapshot with these exact records, fields, mode and scheme."""
    if previous is None or previous["snapshot_date"] != snapshot.isoformat():
        return False
    if (previous.get("mode"), previous.get("fields"), previous.get("scheme_version")) != (
        destination.sync_mode,
        list(destination.fields),
        scheme_version,
    ):
        return False
    if not (folder / previous["file"]).is_file():
        return False
    digest = hashlib.sha256()
    for line in _state_lines(records):
        digest.update(line)
    return digest.hexdigest() == previous["state_sha256"]


def _unchanged(result: ExportResult, folder: Path, manifest: dict) -> ExportResult:
    """A re-run of a committed export: nothing is re-sent; the result names the export that was."""
    result.export_id = manifest["export_id"]
    result.status = "unchanged"
    for name in ("rows", "members", "adds", "updates", "removes", "sha256"):
        setattr(result, name, manifest[name])
    result.path = str(folder / manifest["file"])
    result.manifest_path = str(folder / MANIFEST_NAME)
    result.finished_at = _now()
    result.message = (
        f"destination already holds snapshot {manifest['snapshot_date']} with identical content "
        f"(export {manifest['export_id']} at {manifest['exported_at']}); nothing re-sent"
    )
    return result


def _remove_unreferenced(folder: Path, manifest: dict) -> None:
    """Drop exports older than the retained history and temp files of crashed runs."""
    keep = {MANIFEST_NAME, ".lock"}
    for entry in manifest["history"]:
        keep.update((entry["file"], entry["state_file"]))
    stale_before = time.time() - 3600
    for path in folder.iterdir():
        if path.name in keep or not path.is_file():
            continue
        if path.name.endswith(".tmp") and path.stat().st_mtime > stale_before:
            continue  # may belong to a writer that is still running
        path.unlink(missing_ok=True)


_EMAIL_LIKE = re.compile(r"[^\s'\"@<>]+@[^\s'\"@<>]+")
_PHONE_LIKE = re.compile(r"\+\d[\d\s\-().]{6,}\d|\b\d{9,}\b")


def redact_pii(text: str) -> str:
    """Mask anything shaped like an email or phone: error texts of other libraries may quote row values."""
    return _PHONE_LIKE.sub("<phone>", _EMAIL_LIKE.sub("<email>", text))


def failed_result(
    destination: Destination, snapshot: dt.date, scheme_version: str | None, error: BaseException
) -> ExportResult:
    return ExportResult(
        export_id=uuid.uuid4().hex,
        snapshot_date=snapshot,
        destination=destination.name,
        destination_type=destination.type,
        purpose=destination.purpose,
        mode=destination.sync_mode,
        scheme_version=scheme_version,
        status="failed",
        finished_at=_now(),
        message=str(error)
        if isinstance(error, ActivationError)
        else redact_pii(f"{type(error).__name__}: {error}"),
    )


def export_log_frame(results: Iterable[ExportResult], logged: pd.DataFrame | None = None) -> pd.DataFrame:
    """A snapshot's rows of the export log after this run; `logged` holds its rows before it.

    A destination this run sent nothing to (unchanged, or skipped for a newer snapshot) keeps
    the logged row of the export that did happen, so re-running exports leaves the log as it
    was; sent or failed exports replace their row.
    """
    kept_rows = {} if logged is None else {row["destination"]: row for row in logged.to_dict("records")}
    rows = []
    for result in results:
        kept = kept_rows.get(result.destination)
        if kept is not None and (
            (result.status == "unchanged" and kept["export_id"] == result.export_id)
            or (result.status == "skipped" and kept["status"] in ("success", "skipped"))
        ):
            rows.append({column: kept[column] for column in EXPORT_LOG_COLUMNS})
        else:
            rows.append(asdict(result))
    frame = pd.DataFrame(rows, columns=list(EXPORT_LOG_COLUMNS))
    return frame.astype({c: "Int64" for c, t in EXPORT_LOG_COLUMNS.items() if t == "BIGINT"})


def scheme_version_of(frame: pd.DataFrame) -> str | None:
    if "scheme_version" not in frame.columns or frame["scheme_version"].dropna().empty:
        return None
    versions = sorted({str(v) for v in frame["scheme_version"].dropna()})
    return ",".join(versions)


def run_exports(
    conn: duckdb.DuckDBPyConnection,
    snapshot: dt.date,
    config: ActivationConfig,
    exports_dir: Path,
    post: Callable[[str, bytes, dict[str, str], float], int] = _http_post,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[ExportResult], list[str]]:
    """Export the snapshot to every enabled destination; one failing destination does not stop the others.

    Returns one result per destination (failed ones carry the error) and input notes.
    """
    frame, notes = load_activation_frame(conn, snapshot)
    known_segments = _known_segments(conn, frame)
    suppression = load_suppression_list(config.suppression_path)
    # Recomputed rather than read back: holdouts are a pure function of config and assignments,
    # so a snapshot whose holdouts table is stale or missing can still never leak its controls.
    held_out = set(compute_holdouts(conn, snapshot, config)["customer_key"])
    scheme_version = scheme_version_of(frame)
    results = []
    for destination in config.enabled_destinations:
        try:
            unknown = sorted(set(destination.segments or ()) - known_segments)
            if unknown:
                raise ActivationError(
                    f"destination {destination.name!r}: segments {', '.join(unknown)} are not in the scheme "
                    f"(known: {', '.join(sorted(known_segments))})"
                )
            audience = select_audience(frame, destination, suppression, held_out)
            results.append(
                export_destination(
                    destination, audience, snapshot, scheme_version, exports_dir, post=post, sleep=sleep
                )
            )
        except Exception as error:  # one broken destination must not hold back the others
            results.append(failed_result(destination, snapshot, scheme_version, error))
    return results, notes


def _known_segments(conn: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> set[str]:
    known = set(frame["action_segment"].dropna())
    if "action_segment" in _columns(conn, PROFILES_TABLE):
        known |= {
            row[0] for row in conn.execute(f"SELECT DISTINCT action_segment FROM {PROFILES_TABLE}").fetchall()
        }
    return known


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
            raw_values = {row.email, row.phone, normalize_email(row.email), normalize_phone(row.phone)}
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
