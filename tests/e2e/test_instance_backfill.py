"""Backfills through a real instance: daemon, run queue and the DuckDB pool working together.

What an operator does in the UI — backfill 60 days, resolve identities, backfill the weekly
snapshots, later re-run all of it — done through the webserver's GraphQL API, then checked
in the warehouse. The pool (one DuckDB writer) is what keeps concurrent runs from failing on
the file lock; single-run backfill policies are what make a 60-day range one run.
"""

from datetime import UTC, date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core.warehouse import column_types, quote, table_checksum, table_columns, table_ref

# The fixture below runs three stages before the first test; a stage may take minutes on a
# loaded 2-core machine (the backfill daemon alone ticks every 30 s).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
STAGE_TIMEOUT = 600
SESSION_STARTED = datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def stages(dagster_dev):
    return dagster_dev.plan_stages(dagster_dev.data.weekly_keys_within)


@pytest.fixture(scope="module")
def first_pass(dagster_dev, stages):
    """Daily backfill, then the identity run, then the weekly backfill, each after the last."""
    results = dagster_dev.run_stages(stages, STAGE_TIMEOUT)
    print("first pass:", ", ".join(f"{name} {r.status} in {r.seconds:.0f}s" for name, r in results.items()))
    return results


def _stage(stages, name):
    stage = next(s for s in stages if s.name == name)
    if stage.skip_reason:
        pytest.skip(stage.skip_reason)
    return stage


def _tags(run) -> dict:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def _assert_one_ranged_run(server, result, partitions):
    """Single-run backfill policy: the whole range is one run, tagged with its bounds."""
    assert result.succeeded, server.explain(result)
    bounds = [
        (tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end"))
        for tags in map(_tags, result.runs)
    ]
    assert bounds == [(partitions[0], partitions[-1])], f"runs of the backfill: {bounds}"
    for asset in server.assets(result.stage.asset_keys):
        if asset["isPartitioned"]:
            stats = asset["partitionStats"]
            name = "/".join(asset["assetKey"]["path"])
            assert (stats["numMaterialized"], stats["numFailed"]) == (len(partitions), 0), (name, stats)


def test_daily_backfill_loads_60_days_in_one_run(dagster_dev, stages, first_pass):
    _assert_one_ranged_run(dagster_dev, first_pass["daily"], _stage(stages, "daily").partitions)


def test_identity_run_succeeds(dagster_dev, stages, first_pass):
    _stage(stages, "identity")
    assert first_pass["identity"].succeeded, dagster_dev.explain(first_pass["identity"])


def test_weekly_backfill_snapshots_the_range_in_one_run(dagster_dev, stages, first_pass):
    weekly = _stage(stages, "weekly")
    _assert_one_ranged_run(dagster_dev, first_pass["weekly"], weekly.partitions)


def _warehouse(server):
    return duckdb.connect(str(server.warehouse), read_only=True)


def test_every_day_is_loaded_and_quarantine_reconciles_with_landing(dagster_dev, first_pass):
    assert first_pass["daily"].succeeded, dagster_dev.explain(first_pass["daily"])
    days = dagster_dev.data.days
    landing = dagster_dev.data.path / "landing"
    broken = pl.read_parquet(dagster_dev.data.path / "ground_truth" / "broken_rows.parquet")
    days_with_rows = set()
    with _warehouse(dagster_dev) as conn:
        for source in CONTRACTS:
            accepted = dict(
                conn.execute(f"SELECT _partition_date, count(*) FROM raw.{source} GROUP BY 1").fetchall()
            )
            rejected = dict(
                conn.execute(
                    f"SELECT _partition_date, count(*) FROM quarantine.{source} GROUP BY 1"
                ).fetchall()
            )
            assert {d.isoformat() for d in {*accepted, *rejected}} <= set(days), source
            days_with_rows |= {*accepted, *rejected}
            for key in days:
                day = date.fromisoformat(key)
                data_rows = len((landing / source / f"{key}.csv").read_text().splitlines()) - 1
                assert accepted.get(day, 0) + rejected.get(day, 0) == data_rows, (source, key)
            assert sum(rejected.values()) == broken.filter(pl.col("source") == source).height, source
    assert len(days_with_rows) == len(days)


def _run_time_columns(conn, table: str) -> list[str]:
    """Columns stamped with the wall-clock time of a run (`_loaded_at`, `fitted_at`, ...).

    The synthetic data ends in 2025, so a date/time column reaching this session's start
    records when a run happened, not anything about customers: expected to change on re-run.
    """
    dated = [c for c, t in column_types(conn, table).items() if t.startswith("TIMESTAMP") or t == "DATE"]
    threshold = SESSION_STARTED - timedelta(days=1)
    stamped = []
    for column in dated:
        latest = conn.execute(f"SELECT max({quote(column)}) FROM {table_ref(table)}").fetchall()[0][0]
        if latest is None:
            continue
        if getattr(latest, "tzinfo", None) is not None:
            latest = latest.astimezone(UTC).replace(tzinfo=None)
        if not isinstance(latest, datetime):
            latest = datetime.combine(latest, datetime.min.time())
        if latest >= threshold:
            stamped.append(column)
    return stamped


def _snapshot(server) -> dict[str, tuple[str, list[str], list[str]]]:
    """Table -> (checksum without run-time columns, those columns, rows as text for messages)."""
    snapshot = {}
    with _warehouse(server) as conn:
        tables = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            stamped = _run_time_columns(conn, table)
            kept = [c for c in table_columns(conn, table) if c not in stamped]
            assert kept, f"{table}: nothing left to compare"
            rows = conn.execute(
                f"SELECT {', '.join(quote(c) for c in kept)} FROM {table_ref(table)}"
            ).fetchall()
            snapshot[table] = (table_checksum(conn, table, exclude=stamped), stamped, sorted(map(repr, rows)))
    return snapshot


def _changes(before: dict, after: dict) -> dict[str, list[str]]:
    changes = {}
    for table in sorted(before.keys() | after.keys()):
        if table not in before or table not in after:
            changes[table] = ["appeared" if table in after else "disappeared"]
        elif before[table][0] != after[table][0]:
            old, new = set(before[table][2]), set(after[table][2])
            changes[table] = [f"- {row[:300]}" for row in sorted(old - new)[:2]] + [
                f"+ {row[:300]}" for row in sorted(new - old)[:2]
            ]
    return changes


def test_rerunning_every_stage_at_once_changes_no_table(dagster_dev, stages, first_pass):
    """All stages relaunched together: the pool serializes the writers, and every partition is
    replaced, never appended, so each table is identical apart from its run-time stamps."""
    failed = [dagster_dev.explain(r) for r in first_pass.values() if not r.succeeded]
    assert not failed, "\n".join(failed)
    before = _snapshot(dagster_dev)
    assert {f"{schema}.{source}" for source in CONTRACTS for schema in ("raw", "quarantine")} <= set(before)
    rerun = dagster_dev.run_stages(stages, STAGE_TIMEOUT, concurrently=True)
    failed = [dagster_dev.explain(r) for r in rerun.values() if not r.succeeded]
    assert not failed, "\n".join(failed)
    after = _snapshot(dagster_dev)
    print(f"re-ran {', '.join(f'{n} in {r.seconds:.0f}s' for n, r in rerun.items())} concurrently")
    print("run-time columns left out:", {t: v[1] for t, v in after.items() if v[1]})
    changes = _changes(before, after)
    assert changes == {}, "tables changed by the re-run:\n" + "\n".join(
        f"{table}:\n  " + "\n  ".join(lines) for table, lines in changes.items()
    )


def test_no_run_failed_or_hit_a_lock(dagster_dev, first_pass):
    """Every run of the module (both passes) succeeded at the first attempt, with no DuckDB
    (or SQLite) lock error anywhere in its event log or captured output."""
    runs = dagster_dev.runs()
    assert runs
    assert [(r["runId"][:8], r["jobName"], r["status"]) for r in runs if r["status"] != "SUCCESS"] == []
    assert [r["runId"][:8] for r in runs if "dagster/retry_number" in _tags(r)] == []
    lock_lines = {run["runId"][:8]: dagster_dev.lock_errors(run["runId"])[:3] for run in runs}
    assert {run: lines for run, lines in lock_lines.items() if lines} == {}


GOVERNANCE_QUERY = """
{ assetNodes { assetKey { path } groupName description opVersion kinds isMaterializable
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    metadataEntries { label __typename
      ... on TableSchemaMetadataEntry { schema { columns { name description } } }
      ... on TableColumnLineageMetadataEntry { lineage { columnName } }
      ... on TextMetadataEntry { text } }
    assetMaterializations(limit: 1) { metadataEntries { label ... on IntMetadataEntry { intRepr } } } } }
"""


def test_the_ui_shows_governance_metadata_and_row_counts(dagster_dev, first_pass):
    """What a reviewer opens in the UI, as its GraphQL API serves it after the first pass: every
    asset's owner, group, kinds, description, code version and documented columns, column
    lineage of derived tables, the scheme version, and a row count equal to its table's."""
    failed = [dagster_dev.explain(r) for r in first_pass.values() if not r.succeeded]
    assert not failed, "\n".join(failed)
    nodes = [n for n in dagster_dev.graphql(GOVERNANCE_QUERY)["assetNodes"] if n["isMaterializable"]]
    assert len(nodes) >= 30
    gaps, row_counts = {}, {}
    for node in nodes:
        name = "/".join(node["assetKey"]["path"])
        entries = {e["label"]: e for e in node["metadataEntries"]}
        missing = [
            field
            for field, present in (
                ("owner", node["owners"] == [{"team": "data-platform"}]),
                ("group", node["groupName"] not in (None, "default")),
                ("kinds", bool(node["kinds"])),
                ("description", bool(node["description"])),
                ("code_version", bool(node["opVersion"])),
                ("materialized", bool(node["assetMaterializations"])),
            )
            if not present
        ]
        if "dagster/column_schema" in entries:
            columns = entries["dagster/column_schema"]["schema"]["columns"]
            missing += [f"doc of {c['name']}" for c in columns if not c["description"]]
            if node["assetMaterializations"]:
                counts = {
                    e["label"]: e.get("intRepr") for e in node["assetMaterializations"][0]["metadataEntries"]
                }
                if "dagster/row_count" in counts:
                    row_counts[".".join(node["assetKey"]["path"])] = counts["dagster/row_count"]
                else:
                    missing.append("row count")
        elif "html" not in node["kinds"]:
            missing.append("column schema")
        if missing:
            gaps[name] = missing
    assert gaps == {}
    # The table's whole row count (the run's own rows are dagster/partition_row_count).
    with _warehouse(dagster_dev) as conn:
        existing = {
            row[0]
            for row in conn.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()
        }
        actual = {
            table: str(conn.execute(f"SELECT count(*) FROM {table_ref(table)}").fetchall()[0][0])
            if table in existing
            else "0"
            for table in row_counts
        }
    assert len(row_counts) >= 20 and row_counts == actual
    by_name = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    lineage = {
        e["label"]: [c["columnName"] for c in e["lineage"]]
        for e in by_name["segments/assignments"]["metadataEntries"]
        if e["__typename"] == "TableColumnLineageMetadataEntry"
    }
    assert "action_segment" in lineage.get("dagster/column_lineage", []), lineage
    scheme = {e["label"]: e.get("text") for e in by_name["segments/changelog"]["metadataEntries"]}
    assert scheme.get("scheme_version"), scheme
