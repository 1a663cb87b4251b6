"""Failure drills: what operators meet at 3 a.m., rehearsed against real files and processes.

A run killed mid-write, a corrupt landing file and a renamed column must each leave the
warehouse in a state a re-run repairs: no partial partition, no silent loss, and an error
that names the file and column. The killed run is launched through a real `dagster dev`, whose
daemon retries it; the others run in-process, as no daemon is involved.
"""

import os
import re
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.definitions import build_definitions
from segmentation_platform.defs._lib.config import platform_config_from_settings
from segmentation_platform.defs._lib.jobs import DAILY_INGESTION
from segmentation_platform.defs._lib.resources import resources_for
from segmentation_platform.demo import failure_messages, run_job
from tests.e2e.conftest import FINISHED_RUN_STATUSES, DataSet

pytestmark = pytest.mark.e2e
START, END = date(2025, 1, 1), date(2025, 1, 14)
DAYS = [START + timedelta(days=i) for i in range((END - START).days + 1)]
TABLES = [f"{schema}.{source}" for source in CONTRACTS for schema in ("raw", "quarantine")]


class Drill:
    """A scratch data folder holding two weeks of the session's landing files."""

    def __init__(self, source: Path, data_dir: Path, instance: dg.DagsterInstance):
        self.data_dir, self.instance = data_dir, instance
        for folder in (source / "landing").iterdir():
            (data_dir / "landing" / folder.name).mkdir(parents=True)
            for day in DAYS:
                shutil.copy(folder / f"{day}.csv", data_dir / "landing" / folder.name / f"{day}.csv")
        self.defs = build_definitions(platform_config_from_settings(), resources_for(data_dir))

    def landing(self, source: str, day: date) -> Path:
        return self.data_dir / "landing" / source / f"{day}.csv"

    def run(self, start: date, end: date) -> dg.ExecuteInProcessResult:
        result, label = run_job(self.defs, DAILY_INGESTION, start, end, self.instance)
        assert result is not None, label
        return result

    def reconciles(self, counts: dict, source: str, day: date) -> bool:
        """The day's landing rows are all in raw or quarantine: that partition loaded."""
        landing_rows = len(self.landing(source, day).read_text().splitlines()) - 1
        return (
            counts.get((f"raw.{source}", day), 0) + counts.get((f"quarantine.{source}", day), 0)
            == landing_rows
        )

    def counts(self, warehouse: Path | None = None) -> dict[tuple[str, date], int]:
        """Rows per (table, partition day) of the drill's warehouse (or a copy); a missing key means none."""
        counts = {}
        with duckdb.connect(str(warehouse or self.data_dir / "warehouse.duckdb"), read_only=True) as conn:
            existing = {
                row[0]
                for row in conn.execute(
                    "SELECT schema_name || '.' || table_name FROM duckdb_tables()"
                ).fetchall()
            }
            for table in [t for t in TABLES if t in existing]:
                for day, rows in conn.execute(
                    f"SELECT _partition_date, count(*) FROM {table} GROUP BY 1"
                ).fetchall():
                    counts[(table, day)] = rows
        return counts


@pytest.fixture(scope="module")
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def drill(e2e_data, tmp_path, instance) -> Drill:
    return Drill(e2e_data.path, tmp_path / "data", instance)


def _failed_steps(result) -> set[str]:
    return {event.step_key for event in result.all_events if event.is_step_failure}


def _thin_out(path: Path) -> None:
    """Drop every other data row: the re-run then writes other counts than the first run."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[1::2]]) + "\n")


def test_a_run_killed_mid_write_is_retried_and_leaves_no_partial_partition(drill, start_dagster_dev):
    """The run worker of a daemon-launched run is SIGKILLed (an OOM kill, a lost node) while it
    writes: the code server marks the run failed, run_retries launches a retry, and every
    (table, day) always holds what one complete run wrote: the first load or the retry."""
    with ThreadPoolExecutor(1) as background:  # the server boots while the first load runs
        starting = background.submit(start_dagster_dev, DataSet(drill.data_dir, START, END, persons=0))
        first = drill.run(START, END)
        assert first.success, failure_messages(first)
        before = drill.counts()
        for source in CONTRACTS:
            for day in DAYS:
                _thin_out(drill.landing(source, day))
        server = starting.result()
    run_id = server.launch_run(
        DAILY_INGESTION,
        {"dagster/asset_partition_range_start": str(START), "dagster/asset_partition_range_end": str(END)},
    )
    # Kill once the second step has started writing: the first has committed, the rest has not.
    wal = drill.data_dir / "warehouse.duckdb.wal"
    deadline, pid = time.monotonic() + 300, None
    while time.monotonic() < deadline:
        events = list(server.run_events(run_id))
        started = sum(event["__typename"] == "ExecutionStepStartEvent" for event in events)
        pid = pid or server.run_worker_pid(run_id)
        if started >= 2 and pid or server.run(run_id)["status"] in FINISHED_RUN_STATUSES:
            break
        time.sleep(0.05)
    assert pid and server.run(run_id)["status"] == "STARTED", server.log_tail()
    waited = time.monotonic()
    while not wal.exists() and time.monotonic() - waited < 3:
        time.sleep(0.005)
    killed_while = "a write-ahead log was open" if wal.exists() else "the second step ran"
    os.kill(pid, signal.SIGKILL)
    # What the crash left on disk, copied before the retry can start (it takes seconds).
    crashed = drill.data_dir.parent / "crashed"
    crashed.mkdir()
    for path in drill.data_dir.glob("warehouse.duckdb*"):
        shutil.copy(path, crashed / path.name)
    copied_at = time.time()

    retry = server.wait_for_retry(run_id, timeout=300)
    killed_run = server.run(run_id)
    assert killed_run["status"] == "FAILURE", killed_run
    crash = f"Run execution process for {run_id} was terminated by signal 9 (SIGKILL)"
    assert any(crash in line for line in server.run_log_lines(run_id)), server.log_tail()
    assert retry["status"] == "SUCCESS", server.step_failures(retry["runId"])
    retry_tags = {tag["key"]: tag["value"] for tag in retry["tags"]}
    assert retry_tags["dagster/retry_number"] == "1"
    assert retry["startTime"] > copied_at, "the retry started before the crashed warehouse was copied"
    killed, after = drill.counts(crashed / "warehouse.duckdb"), drill.counts()
    partial = {
        key: (before.get(key, 0), killed.get(key, 0), after.get(key, 0))
        for key in before.keys() | after.keys() | killed.keys()
        if killed.get(key, 0) not in (before.get(key, 0), after.get(key, 0))
    }
    assert partial == {}, f"killed while {killed_while}: (table, day): (before, after kill, after retry)"
    replaced = {table for (table, day), rows in killed.items() if rows != before.get((table, day), 0)}
    untouched = {t for t in TABLES if all(killed.get((t, d), 0) == before.get((t, d), 0) for d in DAYS)}
    # The drill must really have hit a run in flight: some tables written, some not yet.
    assert replaced and untouched - replaced, (killed_while, sorted(replaced))
    # The retry finished the job: every landing row of every day is in raw or quarantine.
    assert all(drill.reconciles(after, source, day) for source in CONTRACTS for day in DAYS)
    assert after != before


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:150] + b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00" + os.urandom(64))


def test_a_corrupt_file_fails_only_its_own_partition_and_source(drill):
    """Day by day (sensor and schedule runs are one partition each), the corrupt file fails
    its day's `pos_transactions` step naming the file; its other sources and days load."""
    bad_day = date(2025, 1, 6)
    _corrupt(drill.landing("pos_transactions", bad_day))
    results = {
        day: drill.run(day, day)
        for day in (bad_day - timedelta(days=1), bad_day, bad_day + timedelta(days=1))
    }
    assert {day: _failed_steps(r) for day, r in results.items()} == {
        bad_day - timedelta(days=1): set(),
        bad_day: {"ingest_pos_transactions"},
        bad_day + timedelta(days=1): set(),
    }
    message = " ".join(failure_messages(results[bad_day]))
    assert f"pos_transactions/{bad_day}.csv" in message and "UTF-8" in message, message
    counts = drill.counts()
    assert not counts.get(("raw.pos_transactions", bad_day)) and not counts.get(
        ("quarantine.pos_transactions", bad_day)
    )
    assert all(drill.reconciles(counts, "pos_transactions", d) for d in results if d != bad_day)
    assert all(
        drill.reconciles(counts, source, bad_day) for source in CONTRACTS if source != "pos_transactions"
    )


def test_a_corrupt_file_in_a_backfill_range_holds_back_only_its_source(drill):
    """A single-run backfill loads a source's whole range in one transaction: one corrupt
    day fails that source for the range (nothing partial) while the other sources load."""
    assert drill.run(START, END).success
    before = drill.counts()
    for source in CONTRACTS:
        for day in DAYS:
            _thin_out(drill.landing(source, day))
    path = drill.landing("pos_transactions", date(2025, 1, 9))
    original = path.read_bytes()
    _corrupt(path)
    result = drill.run(START, END)
    assert _failed_steps(result) == {"ingest_pos_transactions"}
    assert "pos_transactions/2025-01-09.csv" in " ".join(failure_messages(result))
    counts = drill.counts()
    pos_tables = ("raw.pos_transactions", "quarantine.pos_transactions")
    assert {k: v for k, v in counts.items() if k[0] in pos_tables} == {
        k: v for k, v in before.items() if k[0] in pos_tables
    }
    assert all(drill.reconciles(counts, s, day) for s in CONTRACTS if s != "pos_transactions" for day in DAYS)
    path.write_bytes(original)
    repaired = drill.run(START, END)
    assert repaired.success, failure_messages(repaired)
    counts = drill.counts()
    assert all(drill.reconciles(counts, source, day) for source in CONTRACTS for day in DAYS)


def test_a_renamed_required_column_fails_naming_the_column(drill):
    day = date(2025, 1, 8)
    path = drill.landing("web_orders", day)
    header, *rows = path.read_text().splitlines()
    columns = ["order_total" if column == "amount" else column for column in header.split(",")]
    assert columns != header.split(",")
    path.write_text("\n".join([",".join(columns), *rows]) + "\n")
    result = drill.run(START, END)
    assert _failed_steps(result) == {"ingest_web_orders"}
    message = " ".join(failure_messages(result))
    assert f"web_orders/{day}.csv" in message and re.search(r"\bamount\b", message), message
    counts = drill.counts()
    assert not any(counts.get(("raw.web_orders", d)) for d in DAYS)
    assert all(
        drill.reconciles(counts, source, d) for source in CONTRACTS if source != "web_orders" for d in DAYS
    )
