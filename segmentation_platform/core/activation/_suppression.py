"""Hashing and the suppression list: who must never be contacted, kept only as SHA-256 hashes."""

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation_platform.core.activation._common import _SHA256_HEX, ActivationError
from segmentation_platform.core.identity import normalize_email, normalize_phone

# --------------------------------------------------------------------------- hashing


def _email(value: Any) -> str | None:
    """Identity's normalization (the one the golden records went through); non-text is no email."""
    return normalize_email(value) if isinstance(value, str) else None


def _phone(value: Any) -> str | None:
    return normalize_phone(value) if isinstance(value, str) else None


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
                emails.add(sha256_hex(_email(value) or value.strip().lower()))
            elif column == "phone":
                phones.add(sha256_hex(_phone(value) or value.strip()))
            else:
                keys.add(value)
    return SuppressionList(frozenset(emails), frozenset(phones), frozenset(keys), source=str(path))
