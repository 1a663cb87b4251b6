import datetime as dt
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from segmentation_platform.core import activation
from segmentation_platform.core.activation import Experiment, load_activation_config
from segmentation_platform.core.activation import _files as activation_files
from segmentation_platform.core.identity import normalize_email, normalize_phone
from tests.worlds.activation_world import HOLDOUT_SHARE, SNAPSHOTS, build_world, write_config

FIRST, SECOND = SNAPSHOTS[0], SNAPSHOTS[1]
MARKETING_RULES = {"email": ("email_consent",), "sms": ("sms_consent",), "any": None, "all": None}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world") / "warehouse.duckdb")


@pytest.fixture
def conn(world):
    with world.connect(read_only=True) as connection:
        yield connection


def _yes(value) -> bool:
    return bool(pd.notna(value) and value)


def _suppression_rows(world) -> tuple[str, set[str]]:
    """Suppress consenting customers by raw messy email, hashed email, phone and customer key."""
    people = world.customers
    candidates = people[(people["email_consent"] == True) & people["email"].notna() & people["phone"].notna()]  # noqa: E712
    raw, hashed, phone, key = candidates["customer_key"].iloc[:4]
    row = people.set_index("customer_key")
    email_hash = hashlib.sha256(row.loc[hashed, "email"].strip().lower().encode()).hexdigest()
    text = (
        "# do not market\n"
        "email,email_sha256,phone,customer_key\n"
        f"{row.loc[raw, 'email'].upper()},,,\n"
        f",{email_hash.upper()},,\n"
        f",,{row.loc[phone, 'phone']},\n"
        f",,,{key}\n"
    )
    return text, {raw, hashed, phone, key}


def _exported_customers(path: Path, destination, world) -> set[str]:
    """Customers a marketing file reaches, resolved through customer_key or the hashes."""
    people = world.customers
    by_hash = {}
    for row in people.itertuples():
        for value, normalize in (
            (row.email, normalize_email),
            (row.phone, normalize_phone),
        ):
            normalized = normalize(value)
            if normalized:
                by_hash[hashlib.sha256(normalized.encode()).hexdigest()] = row.customer_key
    reached = set()
    for record in activation.read_export_rows(path, destination):
        if record.get("_op") == "remove":
            continue
        for field in ("customer_key", "email_sha256", "phone_sha256"):
            value = record.get(field)
            if value:
                reached.add(by_hash.get(value, value))
    return reached


def test_no_opted_out_unsubscribed_suppressed_or_held_out_customer_in_marketing_exports(
    world, conn, tmp_path
):
    suppression, suppressed = _suppression_rows(world)
    config = load_activation_config(write_config(tmp_path, suppression_rows=suppression))
    for snapshot in SNAPSHOTS[:2]:
        results, _ = activation.run_exports(conn, snapshot, config, tmp_path / "exports")
        assert {r.status for r in results} == {"success"}, [r.message for r in results]
        held = set(activation.compute_holdouts(conn, snapshot, config)["customer_key"])
        assert held
        people = world.customers.set_index("customer_key")
        for result in results:
            destination = next(d for d in config.destinations if d.name == result.destination)
            reached = _exported_customers(Path(result.path), destination, world)
            assert reached, destination.name
            assert not reached & held, destination.name
            if not destination.is_marketing:
                continue
            assert not reached & suppressed, destination.name
            assert not any(people.loc[k, "email_unsubscribed"] for k in reached), destination.name
            email_ok = people["email_consent"].eq(True)
            sms_ok = people["sms_consent"].eq(True)
            allowed = {"email": email_ok, "sms": sms_ok, "any": email_ok | sms_ok, "all": email_ok & sms_ok}
            consenting = set(people.index[allowed[destination.consent]])
            assert reached <= consenting, destination.name
            # The exclusions really happened: someone was kept out for each reason.
            if destination.consent == "any":
                assert result.excluded_suppressed >= 1 and result.excluded_unsubscribed >= 1


def test_contact_points_are_only_used_through_the_consented_channel(world, conn, tmp_path):
    config = load_activation_config(write_config(tmp_path))
    results, _ = activation.run_exports(conn, FIRST, config, tmp_path / "exports")
    ads = next(r for r in results if r.destination == "ads")
    people = world.customers
    email_hashes_without_consent = {
        hashlib.sha256(normalize_email(e).encode()).hexdigest()
        for e, ok in zip(people["email"], people["email_consent"], strict=True)
        if e and not _yes(ok)
    }
    rows = pd.read_csv(ads.path, dtype=str)
    assert not set(rows["email_sha256"].dropna()) & email_hashes_without_consent
    assert rows[["email_sha256", "phone_sha256"]].notna().any(axis=1).all()


def test_ad_audience_holds_no_raw_email_or_phone(world, conn, tmp_path):
    config = load_activation_config(write_config(tmp_path))
    results, _ = activation.run_exports(conn, FIRST, config, tmp_path / "exports")
    ads = next(r for r in results if r.destination == "ads")
    text = Path(ads.path).read_text()
    assert text.splitlines()[0] == "email_sha256,phone_sha256,action_segment"
    lowered = text.lower()
    for row in world.customers.itertuples():
        for value in (row.email, row.phone, row.first_name, row.last_name):
            if value:
                assert value.strip().lower() not in lowered
                assert value.strip().lower().lstrip("+") not in lowered
    # A lower-cased, trimmed email hashes to what the file holds.
    hashes = set(pd.read_csv(ads.path, dtype=str)["email_sha256"].dropna())
    expected = {
        hashlib.sha256(e.strip().lower().encode()).hexdigest()
        for e, ok, unsub in zip(
            world.customers["email"],
            world.customers["email_consent"],
            world.customers["email_unsubscribed"],
            strict=True,
        )
        if e and _yes(ok) and not _yes(unsub)
    }
    assert hashes and hashes <= expected


def _export(destination_name, world, conn, tmp_path, snapshot=FIRST, config=None):
    config = config or load_activation_config(write_config(tmp_path))
    destination = next(d for d in config.destinations if d.name == destination_name)
    frame, _ = activation.load_activation_frame(conn, snapshot)
    held = set(activation.compute_holdouts(conn, snapshot, config)["customer_key"])
    audience = activation.select_audience(frame, destination, activation.SuppressionList(), held)
    return activation.export_destination(destination, audience, snapshot, "v1", tmp_path / "exports")


def _snapshot_of_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def test_a_failure_mid_write_leaves_the_previous_export_and_manifest_intact(
    world, conn, tmp_path, monkeypatch
):
    first = _export("email_list", world, conn, tmp_path)
    folder = tmp_path / "exports" / "email_list"
    before = _snapshot_of_folder(folder)

    def explode_halfway(handle, lines, digest):
        for count, line in enumerate(lines):
            if count == 5:
                raise OSError("disk full")
            handle.write(line)
        return count

    monkeypatch.setattr(activation_files, "_write_lines", explode_halfway)
    with pytest.raises(OSError, match="disk full"):
        _export("email_list", world, conn, tmp_path, snapshot=SECOND)
    assert _snapshot_of_folder(folder) == before  # no temp file left, nothing replaced
    manifest = activation.read_manifest(folder)
    assert manifest["snapshot_date"] == FIRST.isoformat()
    assert (
        hashlib.sha256((folder / manifest["file"]).read_bytes()).hexdigest()
        == manifest["sha256"]
        == first.sha256
    )


_KILL_SCRIPT = """
import sys, time
from pathlib import Path
import datetime as dt
import duckdb
from segmentation_platform.core import activation
from segmentation_platform.core.activation import _exports, _files
from segmentation_platform.core.activation import load_activation_config

def stall(*args, **kwargs):
    Path({marker!r}).write_text("stalled")
    time.sleep(60)

stage = {stage!r}
if stage == "write":
    original = _files._write_lines
    def stall_mid_write(handle, lines, digest):
        for count, line in enumerate(lines):
            handle.write(line)
            if count == 3:
                handle.flush()
                stall()
        return count
    _files._write_lines = stall_mid_write
else:
    _exports.write_atomically = stall  # payload and state renamed, manifest not yet
config = load_activation_config({config!r})
destination = next(d for d in config.destinations if d.name == "email_list")
with duckdb.connect({database!r}, read_only=True) as conn:
    frame, _ = activation.load_activation_frame(conn, dt.date.fromisoformat({snapshot!r}))
audience = activation.select_audience(frame, destination, activation.SuppressionList(), set())
activation.export_destination(destination, audience, dt.date.fromisoformat({snapshot!r}), "v1", Path({exports!r}))
"""


@pytest.mark.parametrize("stage", ["write", "commit"])
def test_a_sigkilled_export_leaves_the_previous_export_and_manifest_intact(world, conn, tmp_path, stage):
    config_path = write_config(tmp_path)
    first = _export("email_list", world, conn, tmp_path)
    folder = tmp_path / "exports" / "email_list"
    manifest_before = (folder / activation.MANIFEST_NAME).read_bytes()
    marker = tmp_path / "marker"
    script = _KILL_SCRIPT.format(
        marker=str(marker),
        stage=stage,
        config=str(config_path),
        database=str(world.path),
        snapshot=SECOND.isoformat(),
        exports=str(tmp_path / "exports"),
    )
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 45
        while not marker.exists():
            assert process.poll() is None, "export process ended before it reached the kill point"
            assert time.monotonic() < deadline, "export process never reached the kill point"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert (folder / activation.MANIFEST_NAME).read_bytes() == manifest_before
    manifest = json.loads(manifest_before)
    assert hashlib.sha256((folder / manifest["file"]).read_bytes()).hexdigest() == first.sha256
    leftovers = {p.name for p in folder.iterdir()} - {
        activation.MANIFEST_NAME,
        ".lock",
        manifest["file"],
        manifest["state_file"],
    }
    assert leftovers  # the killed run's temp or uncommitted files, ignored by readers
    # The next export still works against the last committed baseline, and tidies up.
    result = _export("email_list", world, conn, tmp_path, snapshot=SECOND)
    assert result.status == "success"
    assert activation.read_manifest(folder)["snapshot_date"] == SECOND.isoformat()


class _Endpoint(http.server.BaseHTTPRequestHandler):
    """Records every POST; answers with the next scripted status."""

    statuses: list[int] = []
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(
            {"key": self.headers["Idempotency-Key"], "batch": self.headers["X-Batch"], "body": body}
        )
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    handler = type("Handler", (_Endpoint,), {"statuses": [], "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/hooks/segments?token=secret"
    server.shutdown()
    server.server_close()


def test_webhook_outage_retries_then_fails_clearly_without_marking_the_export_done(
    world, conn, tmp_path, endpoint
):
    handler, url = endpoint
    config = load_activation_config(write_config(tmp_path, webhook_url=url))
    hook = next(d for d in config.destinations if d.name == "hook")
    handler.statuses = [503] * hook.webhook.max_attempts
    results, _ = activation.run_exports(conn, FIRST, config, tmp_path / "exports")
    result = next(r for r in results if r.destination == "hook")
    assert result.status == "failed"
    assert len(handler.received) == hook.webhook.max_attempts == 3
    assert len({r["key"] for r in handler.received}) == 1  # retries carry the same idempotency key
    assert f"after {hook.webhook.max_attempts} attempts (last: HTTP 503)" in result.message
    assert "not marked done" in result.message
    assert "secret" not in result.message and "/hooks" not in result.message
    assert activation.read_manifest(tmp_path / "exports" / "hook") is None
    assert {r.status for r in results if r.destination != "hook"} == {"success"}  # others unaffected

    # The endpoint recovers: everything is sent, first batch with the key the failed attempts used.
    first_key = handler.received[0]["key"]
    handler.received.clear()
    results, _ = activation.run_exports(conn, FIRST, config, tmp_path / "exports")
    result = next(r for r in results if r.destination == "hook")
    assert result.status == "success" and result.webhook_batches == len(handler.received) > 1
    assert handler.received[0]["key"] == first_key
    posted = [json.loads(r["body"]) for r in handler.received]
    assert sum(len(p["records"]) for p in posted) == result.rows == result.members
    assert all(p["destination"] == "hook" and p["snapshot_date"] == FIRST.isoformat() for p in posted)
    # Unchanged data, next run: the endpoint already holds this export, nothing is posted.
    handler.received.clear()
    results, _ = activation.run_exports(conn, FIRST, config, tmp_path / "exports")
    again = next(r for r in results if r.destination == "hook")
    assert (again.status, again.export_id) == ("unchanged", result.export_id) and not handler.received


def test_non_retryable_status_and_network_errors():
    settings = activation.WebhookSettings(
        url="http://127.0.0.1:9/x",
        url_env=None,
        batch_size=10,
        max_attempts=4,
        backoff_seconds=0.5,
        max_backoff_seconds=1.0,
        timeout_seconds=1,
        auth_token_env=None,
    )
    batches = activation.webhook_batches("d", FIRST, "v1", "full", [{"customer_key": "C1"}], 10)
    calls, sleeps = [], []

    def refuse(url, body, headers, timeout):
        calls.append(headers)
        return 400

    with pytest.raises(activation.WebhookDeliveryError, match="HTTP 400 \\(not retried\\)"):
        activation.deliver_webhook("d", settings, batches, post=refuse, sleep=sleeps.append)
    assert len(calls) == 1

    def unreachable(url, body, headers, timeout):
        raise ConnectionRefusedError("refused")

    with pytest.raises(activation.WebhookDeliveryError, match="after 4 attempts"):
        activation.deliver_webhook("d", settings, batches, post=unreachable, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0, 1.0]  # exponential, capped


def test_idempotency_keys_are_stable_and_content_addressed():
    records = [{"customer_key": f"C{i}", "action_segment": "loyal"} for i in range(25)]
    first = activation.webhook_batches("hook", FIRST, "v1", "delta", records, 10)
    again = activation.webhook_batches("hook", FIRST, "v1", "delta", [dict(r) for r in records], 10)
    assert [b.idempotency_key for b in first] == [b.idempotency_key for b in again]
    assert len({b.idempotency_key for b in first}) == 3
    changed = activation.webhook_batches(
        "hook", FIRST, "v1", "delta", records[:-1] + [{"customer_key": "X"}], 10
    )
    assert [b.idempotency_key for b in changed][:2] == [b.idempotency_key for b in first][:2]
    assert changed[2].idempotency_key != first[2].idempotency_key
    other_snapshot = activation.webhook_batches("hook", SECOND, "v1", "delta", records, 10)
    assert not {b.idempotency_key for b in other_snapshot} & {b.idempotency_key for b in first}


def test_delta_of_two_identical_snapshots_is_empty(world, tmp_path):
    database = tmp_path / "copy.duckdb"
    database.write_bytes(world.path.read_bytes())
    copied = FIRST + dt.timedelta(days=1)
    with duckdb.connect(str(database)) as connection:
        for table in (
            "segments.assignments",
            "models.clv_scores",
            "models.churn_scores",
            "models.rfm_scores",
        ):
            connection.execute(
                f"INSERT INTO {table} SELECT * REPLACE (DATE '{copied}' AS snapshot_date) FROM {table} "
                f"WHERE snapshot_date = DATE '{FIRST}'"
            )
        config = load_activation_config(write_config(tmp_path))
        first, _ = activation.run_exports(connection, FIRST, config, tmp_path / "exports")
        second, _ = activation.run_exports(connection, copied, config, tmp_path / "exports")
    for before, after in zip(first, second, strict=True):
        assert after.status == "success"
        assert (after.adds, after.updates, after.removes) == (0, 0, 0), after.destination
        assert after.members == before.members
        if after.mode == "delta":
            assert after.rows == 0
            assert len(Path(after.path).read_text().splitlines()) <= 1  # at most a CSV header


def test_delta_sends_upserts_and_removes_against_the_last_successful_export(world, conn, tmp_path):
    first = _export("email_list", world, conn, tmp_path)
    second = _export("email_list", world, conn, tmp_path, snapshot=SECOND)
    rows = pd.read_csv(second.path, dtype=str)
    assert set(rows["_op"]) <= {"upsert", "remove"}
    assert (rows["_op"] == "upsert").sum() == second.adds + second.updates
    assert (rows["_op"] == "remove").sum() == second.removes
    assert first.members - second.removes + second.adds == second.members
    # Re-running the same snapshot re-sends nothing; an older snapshot never rolls the destination back.
    again = _export("email_list", world, conn, tmp_path, snapshot=SECOND)
    assert (again.status, again.export_id, again.path, again.rows) == (
        "unchanged",
        second.export_id,
        second.path,
        second.rows,
    )
    assert "identical content" in again.message
    stale = _export("email_list", world, conn, tmp_path, snapshot=FIRST)
    assert stale.status == "skipped" and "newer snapshot" in stale.message


def test_holdouts_are_stable_across_snapshots_sticky_and_near_their_share(world, conn, tmp_path):
    config = load_activation_config(write_config(tmp_path))
    per_snapshot = {s: activation.compute_holdouts(conn, s, config) for s in SNAPSHOTS}
    present_everywhere = set.intersection(
        *(
            set(
                conn.execute(
                    "SELECT customer_key FROM segments.assignments WHERE snapshot_date = ?", [s]
                ).df()["customer_key"]
            )
            for s in SNAPSHOTS
        )
    )
    members = [set(f["customer_key"]) & present_everywhere for f in per_snapshot.values()]
    assert all(m == members[0] for m in members) and members[0]
    last = per_snapshot[SNAPSHOTS[-1]].set_index("customer_key")
    assert (last.loc[list(members[0]), "held_out_since"] == FIRST).all()
    late = last[last["held_out_since"] > FIRST]
    assert not late.empty  # late arrivals are enrolled the week they first appear

    keys = pd.DataFrame({"customer_key": [f"K{i}" for i in range(20000)], "action_segment": "a"})
    history = keys.assign(snapshot_date=FIRST)
    experiment = Experiment("e", "salt", HOLDOUT_SHARE, FIRST, None, None)
    held = activation.assign_holdouts(keys, history, FIRST, [experiment])
    assert abs(len(held) / len(keys) - HOLDOUT_SHARE) < 0.015

    # Sticky: a held-out customer who moves to a segment outside the experiment stays held out.
    scoped = Experiment("scoped", "salt", 0.5, FIRST, None, ("a",))
    moved = pd.DataFrame({"customer_key": keys["customer_key"][:200], "action_segment": "b"})
    history = pd.concat([history[:200], moved.assign(snapshot_date=SECOND)])
    before = set(activation.assign_holdouts(keys[:200], history, FIRST, [scoped])["customer_key"])
    after = activation.assign_holdouts(moved, history, SECOND, [scoped])
    assert set(after["customer_key"]) == before and set(after["action_segment"]) == {"b"}
    ended = Experiment("scoped", "salt", 0.5, FIRST, SECOND, ("a",))
    assert activation.assign_holdouts(moved, history, SECOND, [ended]).empty


def test_suppression_list_errors_are_clear(tmp_path):
    with pytest.raises(activation.ActivationError, match="cannot read"):
        activation.load_suppression_list(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("name\nx\n")
    with pytest.raises(activation.ActivationError, match="line 1: header must name"):
        activation.load_suppression_list(tmp_path / "bad.csv")
    (tmp_path / "bad_hash.csv").write_text("email_sha256\nnot-a-hash\n")
    with pytest.raises(activation.ActivationError, match="line 2: email_sha256 is not a SHA-256"):
        activation.load_suppression_list(tmp_path / "bad_hash.csv")


def test_unknown_segment_in_a_destination_fails_that_destination_only(world, conn, tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("segments: [at_risk, win_back]", "segments: [at_risk, winback]"))
    results, _ = activation.run_exports(conn, FIRST, load_activation_config(path), tmp_path / "exports")
    statuses = {r.destination: r for r in results}
    assert statuses["sms_list"].status == "failed" and "winback" in statuses["sms_list"].message
    assert {r.status for name, r in statuses.items() if name != "sms_list"} == {"success"}


def test_segments_only_reach_destinations_their_playbook_approves(world, conn, tmp_path):
    config = load_activation_config(write_config(tmp_path))
    results, _ = activation.run_exports(conn, FIRST, config, tmp_path / "exports")
    ads = next(r for r in results if r.destination == "ads")
    segments = set(pd.read_csv(ads.path, dtype=str)["action_segment"])
    assert segments == {"loyal", "at_risk", "win_back"}  # champions' playbook does not approve paid media
    assert ads.excluded_not_approved > 0
    destination = next(d for d in config.destinations if d.name == "ads")
    frame, _ = activation.load_activation_frame(conn, FIRST)
    with pytest.raises(activation.ActivationError, match="cannot be verified"):
        activation.select_audience(
            frame.drop(columns=[activation.APPROVED_USAGE_FIELD]),
            destination,
            activation.SuppressionList(),
            set(),
        )


def test_error_texts_from_other_libraries_are_redacted():
    text = "Conversion Error: 'Ann.X@Example.com ' / +44 20 7000 0001 / 07700900123 on 2025-03-03"
    assert activation.redact_pii(text) == "Conversion Error: '<email> ' / <phone> / <phone> on 2025-03-03"
