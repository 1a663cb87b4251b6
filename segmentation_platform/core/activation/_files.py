"""Export files: payload rendering and atomic, manifest-committed writes with a per-destination lock."""

import contextlib
import csv
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation_platform.core.activation._audience import SyncDiff
from segmentation_platform.core.activation._common import MANIFEST_NAME, ActivationError
from segmentation_platform.core.activation._config import (
    Destination,
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
