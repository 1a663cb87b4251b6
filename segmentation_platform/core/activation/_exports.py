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

import datetime as dt
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from segmentation_platform.core.activation._audience import (
    Audience,
    _columns,
    audience_records,
    diff_members,
    load_activation_frame,
    record_hash,
    select_audience,
)
from segmentation_platform.core.activation._common import MANIFEST_NAME, PROFILES_TABLE, ActivationError
from segmentation_platform.core.activation._config import (
    ActivationConfig,
    Destination,
)
from segmentation_platform.core.activation._files import (
    _fsync_folder,
    _payload_records,
    _read_state,
    destination_lock,
    read_manifest,
    render_lines,
    stage_file,
    write_atomically,
)
from segmentation_platform.core.activation._holdouts import compute_holdouts
from segmentation_platform.core.activation._suppression import load_suppression_list
from segmentation_platform.core.activation._tables import EXPORTS_SCHEMA
from segmentation_platform.core.activation._webhook import _http_post, deliver_webhook, webhook_batches

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
            rows.append({column: kept[column] for column in EXPORTS_SCHEMA.names})
        else:
            rows.append(asdict(result))
    frame = pd.DataFrame(rows, columns=EXPORTS_SCHEMA.names)
    return frame.astype({c: "Int64" for c, t in EXPORTS_SCHEMA.sql_columns.items() if t == "BIGINT"})


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
