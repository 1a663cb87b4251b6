"""Segments: `segments.assignments`, `segments.profiles` and `segments.changelog`.

The scheme comes in as config (`PlatformConfig.scheme`, loaded with the code location), so
an invalid scheme fails `dagster definitions validate` with the file, line and reason,
before any run. Its version is part of the assets' code_version: editing the scheme marks
every snapshot's segments stale in the UI.
"""

from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import segments, warehouse
from segmentation_platform.core.warehouse import tables
from segmentation_platform.defs._lib.keys import (
    BEHAVIOUR_CLUSTERS_KEY,
    CHURN_SCORES_KEY,
    CLV_SCORES_KEY,
    CUSTOMER_FEATURES_KEY,
    RFM_SCORES_KEY,
    SEGMENT_ASSIGNMENTS_KEY,
    SEGMENT_CHANGELOG_KEY,
    SEGMENT_PROFILES_KEY,
)
from segmentation_platform.defs._lib.metadata import OWNER, markdown_table, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots

SOURCE_KEYS = {
    "features": CUSTOMER_FEATURES_KEY,
    "rfm": RFM_SCORES_KEY,
    "clv": CLV_SCORES_KEY,
    "churn": CHURN_SCORES_KEY,
    "clusters": BEHAVIOUR_CLUSTERS_KEY,
}

ONE_SEGMENT_CHECK = "exactly_one_segment_per_customer"
NON_EMPTY_CHECK = "every_segment_non_empty"
SEGMENT_COUNT_CHECK = "segment_count_within_3_to_7"


def segments_code_version(scheme: segments.SegmentScheme) -> str:
    """Logic version and the scheme version (declared version + content hash)."""
    return version_of(segments.LOGIC_VERSION, scheme.version)


def build_segment_assets(scheme: segments.SegmentScheme) -> list:
    """`changelog`, `assignments` (with its three checks) and `profiles` under `scheme`."""
    code_version = segments_code_version(scheme)
    return [
        _changelog_asset(scheme, code_version),
        _assignments_asset(scheme, code_version),
        _profiles_asset(scheme, code_version),
    ]


def _changelog_asset(scheme: segments.SegmentScheme, code_version: str) -> dg.AssetsDefinition:
    schema = segments.SEGMENT_CHANGELOG_SCHEMA

    @dg.asset(
        key=SEGMENT_CHANGELOG_KEY,
        description=schema.description,
        group_name="segments",
        pool="duckdb",
        owners=[OWNER],
        kinds={"duckdb", "yaml"},
        code_version=code_version,
        metadata=schema_metadata(schema) | {"scheme_path": scheme.path, "scheme_version": scheme.version},
        tags={"layer": "segments"},
    )
    def changelog(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        with duckdb.get_connection() as conn:
            entry = segments.record_scheme(conn, scheme, datetime.now(UTC).replace(tzinfo=None))
            rows = warehouse.row_count(conn, tables.SEGMENT_CHANGELOG)
        context.log.info(
            f"scheme {scheme.version}: " + ("recorded" if entry else "unchanged, nothing recorded")
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "scheme_version": scheme.version,
                "recorded_new_version": entry is not None,
                "changes": dg.MetadataValue.md(
                    "\n".join(f"- {line}" for line in entry["change_summary"].splitlines())
                    if entry
                    else "No change."
                ),
            }
        )

    return changelog


def _assignments_asset(scheme: segments.SegmentScheme, code_version: str) -> dg.AssetsDefinition:
    schema = segments.assignments_schema(scheme)

    @dg.asset(
        key=SEGMENT_ASSIGNMENTS_KEY,
        description=schema.description,
        group_name="segments",
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[*SOURCE_KEYS.values(), SEGMENT_CHANGELOG_KEY],
        owners=[OWNER],
        kinds={"duckdb", "python"},
        code_version=code_version,
        metadata=schema_metadata(schema)
        | {"scheme_version": scheme.version, "segments": ", ".join(scheme.segment_names)},
        tags={"layer": "segments"},
        check_specs=[
            dg.AssetCheckSpec(
                ONE_SEGMENT_CHECK,
                asset=SEGMENT_ASSIGNMENTS_KEY,
                blocking=True,
                description="Every customer of the features snapshot has exactly one row and one defined segment.",
            ),
            dg.AssetCheckSpec(
                NON_EMPTY_CHECK,
                asset=SEGMENT_ASSIGNMENTS_KEY,
                description="Every segment the scheme defines has customers (warns otherwise).",
            ),
            dg.AssetCheckSpec(
                SEGMENT_COUNT_CHECK,
                asset=SEGMENT_ASSIGNMENTS_KEY,
                blocking=True,
                description="The scheme defines, and customers fall into, 3 to 7 action segments.",
            ),
        ],
    )
    def assignments(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        counts: dict[date, dict[str, int]] = {}
        problems, notes = {}, []
        with duckdb.get_connection() as conn:
            for snapshot in dates:
                sources = segments.load_sources(conn, snapshot, scheme, notes)
                if sources["features"] is None:
                    raise dg.Failure(
                        f"{tables.CUSTOMER_FEATURES} does not exist: materialize the features first"
                    )
                result = segments.assign_segments(scheme, sources, snapshot)
                notes += result.notes
                frame = result.assignments
                warehouse.replace_partitions(
                    conn, schema.table, frame, "snapshot_date", [snapshot], columns=schema.sql_columns
                )
                counts[snapshot] = frame["action_segment"].value_counts().to_dict()
                customers = sources["features"]["customer_key"].nunique()
                problem = segments.assignment_problems(conn, scheme, snapshot, customers)
                if problem is not None:
                    problems[snapshot.isoformat()] = problem
                context.log.info(
                    f"segments as of {snapshot}: {len(frame)} customers, scheme {scheme.version}"
                )
            total_rows = warehouse.row_count(conn, schema.table)
            logged = segments.latest_change(conn)

        distribution = (
            pd.DataFrame(
                {
                    d.isoformat(): [counts[d].get(name, 0) for name in scheme.segment_names]
                    for d in dates[-6:]
                },
                index=scheme.segment_names,
            )
            .rename_axis("action_segment")
            .reset_index()
        )
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": total_rows,
                "dagster/partition_row_count": sum(sum(c.values()) for c in counts.values()),
                "scheme_version": scheme.version,
                "scheme_version_in_changelog": bool(logged and logged["scheme_version"] == scheme.version),
                "segments": dg.MetadataValue.md(markdown_table(distribution)),
                "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in dict.fromkeys(notes)) or "none"),
            }
        )
        yield dg.AssetCheckResult(
            check_name=ONE_SEGMENT_CHECK,
            passed=not problems,
            metadata={"problems": dg.MetadataValue.json(problems)},
        )
        empty = segments.empty_segments(scheme, counts)
        yield dg.AssetCheckResult(
            check_name=NON_EMPTY_CHECK,
            passed=not empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"empty_segments": dg.MetadataValue.json(empty)},
        )
        passed, used = segments.segment_count_ok(scheme, counts)
        yield dg.AssetCheckResult(
            check_name=SEGMENT_COUNT_CHECK,
            passed=passed,
            metadata={
                "defined_segments": len(scheme.segments),
                "segments_in_use": dg.MetadataValue.json(used),
            },
        )

    return assignments


def _profiles_asset(scheme: segments.SegmentScheme, code_version: str) -> dg.AssetsDefinition:
    schema = segments.SEGMENT_PROFILES_SCHEMA

    @dg.asset(
        key=SEGMENT_PROFILES_KEY,
        description=schema.description,
        group_name="segments",
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[SEGMENT_ASSIGNMENTS_KEY, CUSTOMER_FEATURES_KEY, CLV_SCORES_KEY, CHURN_SCORES_KEY],
        owners=[OWNER],
        kinds={"duckdb", "python"},
        code_version=code_version,
        metadata=schema_metadata(schema) | {"scheme_version": scheme.version},
        tags={"layer": "segments"},
    )
    def profiles(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        written, notes = {}, []
        with duckdb.get_connection() as conn:
            if not warehouse.table_exists(conn, tables.SEGMENT_ASSIGNMENTS):
                raise dg.Failure(
                    f"{tables.SEGMENT_ASSIGNMENTS} does not exist: materialize segments/assignments first"
                )
            for snapshot in dates:
                assigned = conn.execute(
                    f"SELECT * FROM {warehouse.table_ref(tables.SEGMENT_ASSIGNMENTS)} WHERE snapshot_date = ?",
                    [snapshot],
                ).df()
                sources = segments.load_sources(conn, snapshot, scheme, notes)
                frame = segments.segment_profiles(scheme, assigned, sources, snapshot)
                written[snapshot] = warehouse.replace_partitions(
                    conn, schema.table, frame, "snapshot_date", [snapshot], columns=schema.sql_columns
                )
            total_rows = warehouse.row_count(conn, schema.table)
        shown = frame[
            [
                "action_segment",
                "customers",
                "share",
                "revenue",
                "margin",
                "mean_cltv",
                "mean_churn_probability",
            ]
        ]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": total_rows,
                "dagster/partition_row_count": sum(written.values()),
                "latest_profile": dg.MetadataValue.md(markdown_table(shown, digits=2)),
            }
        )

    return profiles
