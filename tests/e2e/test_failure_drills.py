"""Failure drills: what operators meet at 3 a.m., rehearsed against real files and processes.

A run killed mid-write, a corrupt landing file and a renamed column must each leave the
warehouse in a state a re-run repairs: no partial partition, no silent loss, and an error
that names the file and column. The killed run is a real `dagster asset materialize`
process group; the others run in-process, as no daemon is involved.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.definitions import build_definitions
from segmentation_platform.defs.jobs import DAILY_INGESTION
from segmentation_platform.defs.resources import resources_for
from segmentation_platform.demo import failure_messages, run_job

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
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
        self.defs = build_definitions(resources_for(data_dir))

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

    def counts(self) -> dict[tuple[str, date], int]:
        """Rows per (table, partition day); a missing key means none."""
        counts = {}
        with duckdb.connect(str(self.data_dir / "warehouse.duckdb"), read_only=True) as conn:
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


def test_a_run_killed_mid_write_leaves_no_partial_partition(drill, tmp_path):
    first = drill.run(START, END)
    assert first.success, failure_messages(first)
    before = drill.counts()
    for source in CONTRACTS:
        for day in DAYS:
            _thin_out(drill.landing(source, day))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    log_path = tmp_path / "materialize.log"
    keys = ",".join(f"{schema}/{source}" for source in CONTRACTS for schema in ("raw", "quarantine"))
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "asset",
                "materialize",
                "-m",
                "segmentation_platform.definitions",
            ]
            + ["--select", keys, "--partition-range", f"{START}...{END}"],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "DAGSTER_HOME": str(home),
                "SEGMENTATION_DATA_DIR": str(drill.data_dir),
                "SEGMENTATION_START_DATE": START.isoformat(),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Kill the whole process group (run and step workers, as an OOM kill or a lost node would)
    # once the second step has started writing: the first has committed, the rest has not.
    wal = drill.data_dir / "warehouse.duckdb.wal"
    deadline = time.monotonic() + 300
    killed_while = None
    while killed_while is None and process.poll() is None and time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if text.count("STEP_START") >= 2:
            waited = time.monotonic()
            while not wal.exists() and time.monotonic() - waited < 3:
                time.sleep(0.005)
            killed_while = "a write-ahead log was open" if wal.exists() else "the second step ran"
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.05)
    process.wait(timeout=30)
    assert killed_while, f"the run ended before it could be killed:\n{log_path.read_text()[-3000:]}"

    killed = drill.counts()
    print(f"killed while {killed_while}")
    rerun = drill.run(START, END)
    assert rerun.success, failure_messages(rerun)
    after = drill.counts()
    # Every (table, day) holds exactly what one complete run wrote: the first or the re-run.
    partial = {
        key: (before.get(key, 0), killed.get(key, 0), after.get(key, 0))
        for key in before.keys() | after.keys() | killed.keys()
        if killed.get(key, 0) not in (before.get(key, 0), after.get(key, 0))
    }
    assert partial == {}, f"killed while {killed_while}: (table, day): (before, after kill, after re-run)"
    replaced = {table for (table, _), rows in killed.items() if rows != before.get((table, _), 0)}
    untouched = {t for t in TABLES if all(killed.get((t, d), 0) == before.get((t, d), 0) for d in DAYS)}
    # The drill must really have hit a run in flight: some tables written, some not yet.
    assert replaced and untouched - replaced, (killed_while, sorted(replaced))
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
