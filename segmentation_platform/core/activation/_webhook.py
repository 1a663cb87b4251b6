"""Webhook delivery: batches POSTed through an injectable HTTP client, retried with backoff."""

import datetime as dt
import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from segmentation_platform.core.activation._common import WebhookDeliveryError
from segmentation_platform.core.activation._config import (
    WebhookSettings,
)

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
