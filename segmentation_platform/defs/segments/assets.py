"""Segments: `segments.assignments`, `segments.profiles` and `segments.changelog`.

The scheme (config/segment_scheme.yaml, or $SEGMENTATION_SEGMENT_SCHEME) is loaded when
this module is imported, so an invalid scheme fails `dagster definitions validate` with
the file, line and reason, before any run. Its version is part of the assets'
code_version: editing the scheme marks every snapshot's segments stale in the UI.
"""

import os
from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import segments, warehouse
from segmentation_platform.defs._lib.metadata import (
    OWNER,
    column_schema,
    markdown_table,
    table_metadata,
    version_of,
)
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots
from segmentation_platform.defs.features.assets import FEATURES_KEY
from segmentation_platform.defs.models.churn import SCORES_KEY as CHURN_KEY
from segmentation_platform.defs.models.clusters import CLUSTERS_KEY
from segmentation_platform.defs.models.clv import SCORES_KEY as CLV_KEY
from segmentation_platform.defs.models.rfm import RFM_KEY

SCHEME = segments.load_scheme(os.environ.get("SEGMENTATION_SEGMENT_SCHEME") or segments.SCHEME_PATH)
CODE_VERSION = version_of(segments.LOGIC_VERSION, SCHEME.version)

ASSIGNMENTS_KEY = dg.AssetKey(["segments", "assignments"])
PROFILES_KEY = dg.AssetKey(["segments", "profiles"])
CHANGELOG_KEY = dg.AssetKey(["segments", "changelog"])
ASSIGNMENTS_TABLE = "segments.assignments"
PROFILES_TABLE = "segments.profiles"
SOURCE_KEYS = {
    "features": FEATURES_KEY,
    "rfm": RFM_KEY,
    "clv": CLV_KEY,
    "churn": CHURN_KEY,
    "clusters": CLUSTERS_KEY,
}

ONE_SEGMENT_CHECK = "exactly_one_segment_per_customer"
NON_EMPTY_CHECK = "every_segment_non_empty"
SEGMENT_COUNT_CHECK = "segment_count_within_3_to_7"


def _assignment_docs(scheme: segments.SegmentScheme) -> dict[str, tuple[str, str]]:
    docs = {
        "customer_key": ("VARCHAR", "Customer key (every customer of the features snapshot)"),
        "snapshot_date": ("DATE", "Snapshot assigned"),
    }
    for axis in scheme.axes:
        where = f"{segments.SOURCE_TABLES[axis.source]}.{axis.column}, {axis.method}"
        docs[axis.name] = ("VARCHAR", f"{axis.description} ({where}; missing: {axis.missing})".strip())
    return docs | {
        "action_segment": ("VARCHAR", "The one action segment: " + ", ".join(scheme.segment_names)),
        "rule": ("VARCHAR", "The scheme rule that assigned it (first match wins)"),
        "scheme_version": ("VARCHAR", "Scheme version: declared version + content hash"),
    }


PROFILE_DOCS = {
    "snapshot_date": ("DATE", "Snapshot"),
    "scheme_version": ("VARCHAR", "Scheme version"),
    "action_segment": ("VARCHAR", "Action segment"),
    "segment_order": ("INTEGER", "Position of the segment in the scheme"),
    "customers": ("BIGINT", "Customers in the segment (0: flagged by the non-empty check)"),
    "share": ("DOUBLE", "Share of the snapshot's customers"),
    "revenue": ("DOUBLE", "Sum of the scheme's profile.revenue column"),
    "revenue_share": ("DOUBLE", "Share of all customers' revenue"),
    "margin": ("DOUBLE", "Sum of the scheme's profile.margin column"),
    "mean_cltv": ("DOUBLE", "Mean of the scheme's profile.cltv column"),
    "mean_churn_probability": ("DOUBLE", "Mean churn probability"),
    "top_features": ("VARCHAR", "JSON: the 5 features setting the segment apart (z-score of means vs all)"),
    "axis_mix": ("VARCHAR", "JSON: the top values of every axis within the segment, with shares"),
    "description": ("VARCHAR", "Segment description"),
    "objective": ("VARCHAR", "Playbook: objective"),
    "recommended_action": ("VARCHAR", "Playbook: recommended action"),
    "offer": ("VARCHAR", "Playbook: offer"),
    "channel": ("VARCHAR", "Playbook: channel"),
    "contact_frequency_cap": ("VARCHAR", "Playbook: contact frequency cap"),
    "owner": ("VARCHAR", "Playbook: owning team"),
    "approved_usage": ("VARCHAR", "Playbook: approved uses of the segment"),
}
CHANGELOG_DOCS = {
    "change_number": ("INTEGER", "1 for the first recorded scheme, +1 per change"),
    "scheme_version": ("VARCHAR", "Declared version + content hash"),
    "declared_version": ("INTEGER", "`version` in the YAML"),
    "content_hash": ("VARCHAR", "SHA-256 of the scheme's content (comments and layout excluded)"),
    "scheme_date": ("DATE", "`date` in the YAML"),
    "author": ("VARCHAR", "`author` in the YAML"),
    "recorded_at": ("TIMESTAMP", "When this version was first materialized (UTC)"),
    "previous_version": ("VARCHAR", "Version it replaced"),
    "change_summary": ("VARCHAR", "Readable diff against the previous version, one change per line"),
    "scheme_json": ("VARCHAR", "The scheme's full content, for later diffs"),
}


def load_sources(conn, snapshot: date, scheme: segments.SegmentScheme, notes: list[str]) -> dict:
    """Each source's rows at the snapshot (customer_key + the columns the scheme reads);
    None for a table not built yet. Features come whole: profiles describe segments by them."""
    needed = scheme.columns_needed()
    sources: dict[str, pd.DataFrame | None] = {}
    for source, table in segments.SOURCE_TABLES.items():
        if not warehouse.table_exists(conn, table):
            sources[source] = None
            continue
        present = warehouse.table_columns(conn, table)
        # A needed column the table lacks is left out: assign_segments then names the axis and line.
        wanted = present if source == "features" else ["customer_key", *needed.get(source, [])]
        select = ", ".join(warehouse.quote(c) for c in dict.fromkeys(wanted) if c in present)
        frame = conn.execute(
            f"SELECT {select} FROM {warehouse.table_ref(table)} WHERE snapshot_date = ?", [snapshot]
        ).df()
        if frame.empty and source != "features":
            notes.append(f"{table} has no rows for {snapshot}")
        sources[source] = frame
    return sources


@dg.asset(
    key=CHANGELOG_KEY,
    description=(
        "Every version of the segment scheme ever materialized: declared version + content hash, "
        "date, author and a readable diff against the previous version. A changed scheme adds a row "
        "(even if its declared version was not bumped); an unchanged one adds none."
    ),
    group_name="segments",
    pool="duckdb",
    owners=[OWNER],
    kinds={"duckdb", "yaml"},
    code_version=CODE_VERSION,
    metadata=table_metadata(segments.CHANGELOG_TABLE, column_schema(CHANGELOG_DOCS))
    | {"scheme_path": SCHEME.path, "scheme_version": SCHEME.version},
    tags={"layer": "segments"},
)
def changelog(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    with duckdb.get_connection() as conn:
        entry = segments.record_scheme(conn, SCHEME, datetime.now(UTC).replace(tzinfo=None))
        rows = warehouse.row_count(conn, segments.CHANGELOG_TABLE)
    context.log.info(f"scheme {SCHEME.version}: " + ("recorded" if entry else "unchanged, nothing recorded"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "scheme_version": SCHEME.version,
            "recorded_new_version": entry is not None,
            "changes": dg.MetadataValue.md(
                "\n".join(f"- {line}" for line in entry["change_summary"].splitlines())
                if entry
                else "No change."
            ),
        }
    )


@dg.asset(
    key=ASSIGNMENTS_KEY,
    description=(
        f"Every customer's action segment at the snapshot, from scheme {SCHEME.version} "
        f"({SCHEME.author}, {SCHEME.date}): the axes "
        + ", ".join(a.name for a in SCHEME.axes)
        + ", the segment, and the rule that fired."
    ),
    group_name="segments",
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[*SOURCE_KEYS.values(), CHANGELOG_KEY],
    owners=[OWNER],
    kinds={"duckdb", "python"},
    code_version=CODE_VERSION,
    metadata=table_metadata(ASSIGNMENTS_TABLE, column_schema(_assignment_docs(SCHEME)))
    | {"scheme_version": SCHEME.version, "segments": ", ".join(SCHEME.segment_names)},
    tags={"layer": "segments"},
    check_specs=[
        dg.AssetCheckSpec(
            ONE_SEGMENT_CHECK,
            asset=ASSIGNMENTS_KEY,
            blocking=True,
            description="Every customer of the features snapshot has exactly one row and one defined segment.",
        ),
        dg.AssetCheckSpec(
            NON_EMPTY_CHECK,
            asset=ASSIGNMENTS_KEY,
            description="Every segment the scheme defines has customers (warns otherwise).",
        ),
        dg.AssetCheckSpec(
            SEGMENT_COUNT_CHECK,
            asset=ASSIGNMENTS_KEY,
            blocking=True,
            description="The scheme defines, and customers fall into, 3 to 7 action segments.",
        ),
    ],
)
def assignments(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    dates = snapshot_dates(context)
    columns = segments.assignment_columns(SCHEME)
    counts: dict[date, dict[str, int]] = {}
    problems, notes = {}, []
    with duckdb.get_connection() as conn:
        for snapshot in dates:
            sources = load_sources(conn, snapshot, SCHEME, notes)
            if sources["features"] is None:
                raise dg.Failure("features.customer_features does not exist: materialize the features first")
            result = segments.assign_segments(SCHEME, sources, snapshot)
            notes += result.notes
            frame = result.assignments
            warehouse.replace_partitions(
                conn, ASSIGNMENTS_TABLE, frame, "snapshot_date", [snapshot], columns=columns
            )
            counts[snapshot] = frame["action_segment"].value_counts().to_dict()
            customers = sources["features"]["customer_key"].nunique()
            stored = conn.execute(
                f"SELECT count(*), count(DISTINCT customer_key), count(*) FILTER (WHERE action_segment IS NULL "
                f"OR action_segment NOT IN (SELECT unnest(?))) FROM {warehouse.table_ref(ASSIGNMENTS_TABLE)} "
                "WHERE snapshot_date = ?",
                [SCHEME.segment_names, snapshot],
            ).fetchone()
            if stored != (customers, customers, 0):
                problems[snapshot.isoformat()] = {
                    "customers": customers,
                    "rows": stored[0],
                    "distinct_customers": stored[1],
                    "rows_without_a_defined_segment": stored[2],
                }
            context.log.info(f"segments as of {snapshot}: {len(frame)} customers, scheme {SCHEME.version}")
        total_rows = conn.execute(
            f"SELECT count(*) FROM {warehouse.table_ref(ASSIGNMENTS_TABLE)}"
        ).fetchone()[0]
        logged = segments.latest_change(conn)

    distribution = (
        pd.DataFrame(
            {d.isoformat(): [counts[d].get(name, 0) for name in SCHEME.segment_names] for d in dates[-6:]},
            index=SCHEME.segment_names,
        )
        .rename_axis("action_segment")
        .reset_index()
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total_rows,
            "dagster/partition_row_count": sum(sum(c.values()) for c in counts.values()),
            "scheme_version": SCHEME.version,
            "scheme_version_in_changelog": bool(logged and logged["scheme_version"] == SCHEME.version),
            "segments": dg.MetadataValue.md(markdown_table(distribution)),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in dict.fromkeys(notes)) or "none"),
        }
    )
    yield dg.AssetCheckResult(
        check_name=ONE_SEGMENT_CHECK,
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems)},
    )
    empty = {d.isoformat(): [n for n in SCHEME.segment_names if not counts[d].get(n)] for d in dates}
    empty = {d: names for d, names in empty.items() if names}
    yield dg.AssetCheckResult(
        check_name=NON_EMPTY_CHECK,
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"empty_segments": dg.MetadataValue.json(empty)},
    )
    used = {d.isoformat(): len(c) for d, c in counts.items()}
    defined = len(SCHEME.segments)
    yield dg.AssetCheckResult(
        check_name=SEGMENT_COUNT_CHECK,
        passed=segments.MIN_SEGMENTS <= defined <= segments.MAX_SEGMENTS
        and all(n <= segments.MAX_SEGMENTS for n in used.values()),
        metadata={"defined_segments": defined, "segments_in_use": dg.MetadataValue.json(used)},
    )


@dg.asset(
    key=PROFILES_KEY,
    description=(
        "One row per action segment and snapshot: size, share, revenue, margin, mean CLTV, churn "
        "risk, the features that set it apart and its playbook (objective, action, offer, channel, "
        "frequency cap, owner, approved usage). Empty segments have a row with 0 customers."
    ),
    group_name="segments",
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[ASSIGNMENTS_KEY, FEATURES_KEY, CLV_KEY, CHURN_KEY],
    owners=[OWNER],
    kinds={"duckdb", "python"},
    code_version=CODE_VERSION,
    metadata=table_metadata(PROFILES_TABLE, column_schema(PROFILE_DOCS)) | {"scheme_version": SCHEME.version},
    tags={"layer": "segments"},
)
def profiles(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    dates = snapshot_dates(context)
    written, notes = {}, []
    with duckdb.get_connection() as conn:
        if not warehouse.table_exists(conn, ASSIGNMENTS_TABLE):
            raise dg.Failure(f"{ASSIGNMENTS_TABLE} does not exist: materialize segments/assignments first")
        for snapshot in dates:
            assigned = conn.execute(
                f"SELECT * FROM {warehouse.table_ref(ASSIGNMENTS_TABLE)} WHERE snapshot_date = ?", [snapshot]
            ).df()
            sources = load_sources(conn, snapshot, SCHEME, notes)
            frame = segments.segment_profiles(SCHEME, assigned, sources, snapshot)
            written[snapshot] = warehouse.replace_partitions(
                conn, PROFILES_TABLE, frame, "snapshot_date", [snapshot], columns=segments.PROFILE_COLUMNS
            )
        total_rows = warehouse.row_count(conn, PROFILES_TABLE)
    shown = frame[
        ["action_segment", "customers", "share", "revenue", "margin", "mean_cltv", "mean_churn_probability"]
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total_rows,
            "dagster/partition_row_count": sum(written.values()),
            "latest_profile": dg.MetadataValue.md(markdown_table(shown, digits=2)),
        }
    )


segment_assets = [changelog, assignments, profiles]
# Everything this stage adds, for Definitions: churn, clusters, then segments.
