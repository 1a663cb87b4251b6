"""The three `segments.*` tables, declared once: the writers, the assets' column schemas and
the docs read these. The assignments' axis columns come from the scheme, hence a function."""

from segmentation_platform.core.segments._scheme import SOURCE_TABLES, SegmentScheme
from segmentation_platform.core.warehouse import Column, TableSchema, columns, tables


def assignments_schema(scheme: SegmentScheme) -> TableSchema:
    """`segments.assignments` under `scheme`: one VARCHAR column per axis, in scheme order."""
    axes = tuple(
        Column(
            axis.name,
            "VARCHAR",
            f"{axis.description} ({SOURCE_TABLES[axis.source]}.{axis.column}, {axis.method}; "
            f"missing: {axis.missing})".strip(),
        )
        for axis in scheme.axes
    )
    return TableSchema(
        table=tables.SEGMENT_ASSIGNMENTS,
        grain="customer x snapshot",
        partition_column="snapshot_date",
        description="Every customer's action segment at the snapshot, its axis values and the rule that fired.",
        columns=(
            *columns(
                ("customer_key", "VARCHAR", "Customer key (every customer of the features snapshot)"),
                ("snapshot_date", "DATE", "Snapshot assigned"),
            ),
            *axes,
            *columns(
                ("action_segment", "VARCHAR", "The one action segment: " + ", ".join(scheme.segment_names)),
                ("rule", "VARCHAR", "The scheme rule that assigned it (first match wins)"),
                ("scheme_version", "VARCHAR", "Scheme version: declared version + content hash"),
            ),
        ),
    )


SEGMENT_PROFILES_SCHEMA = TableSchema(
    table=tables.SEGMENT_PROFILES,
    grain="action segment x snapshot",
    partition_column="snapshot_date",
    description="One row per action segment and snapshot (empty segments too): size, economics, "
    "what sets it apart and its playbook.",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot"),
        ("scheme_version", "VARCHAR", "Scheme version"),
        ("action_segment", "VARCHAR", "Action segment"),
        ("segment_order", "INTEGER", "Position of the segment in the scheme"),
        ("customers", "BIGINT", "Customers in the segment (0: flagged by the non-empty check)"),
        ("share", "DOUBLE", "Share of the snapshot's customers"),
        ("revenue", "DOUBLE", "Sum of the scheme's profile.revenue column"),
        ("revenue_share", "DOUBLE", "Share of all customers' revenue"),
        ("margin", "DOUBLE", "Sum of the scheme's profile.margin column"),
        ("mean_cltv", "DOUBLE", "Mean of the scheme's profile.cltv column"),
        ("mean_churn_probability", "DOUBLE", "Mean churn probability"),
        (
            "top_features",
            "VARCHAR",
            "JSON: the 5 features setting the segment apart (z-score of means vs all)",
        ),
        ("axis_mix", "VARCHAR", "JSON: the top values of every axis within the segment, with shares"),
        ("description", "VARCHAR", "Segment description"),
        ("objective", "VARCHAR", "Playbook: objective"),
        ("recommended_action", "VARCHAR", "Playbook: recommended action"),
        ("offer", "VARCHAR", "Playbook: offer"),
        ("channel", "VARCHAR", "Playbook: channel"),
        ("contact_frequency_cap", "VARCHAR", "Playbook: contact frequency cap"),
        ("owner", "VARCHAR", "Playbook: owning team"),
        ("approved_usage", "VARCHAR", "Playbook: approved uses of the segment"),
    ),
)

SEGMENT_CHANGELOG_SCHEMA = TableSchema(
    table=tables.SEGMENT_CHANGELOG,
    grain="distinct scheme content",
    description="Every version of the segment scheme ever materialized, with a readable diff against "
    "the previous one (appended to).",
    columns=columns(
        ("change_number", "INTEGER", "1 for the first recorded scheme, +1 per change"),
        ("scheme_version", "VARCHAR", "Declared version + content hash"),
        ("declared_version", "INTEGER", "`version` in the YAML"),
        ("content_hash", "VARCHAR", "SHA-256 of the scheme's content (comments and layout excluded)"),
        ("scheme_date", "DATE", "`date` in the YAML"),
        ("author", "VARCHAR", "`author` in the YAML"),
        ("recorded_at", "TIMESTAMP", "When this version was first materialized (UTC)"),
        ("previous_version", "VARCHAR", "Version it replaced"),
        ("change_summary", "VARCHAR", "Readable diff against the previous version, one change per line"),
        ("scheme_json", "VARCHAR", "The scheme's full content, for later diffs"),
    ),
)

# The tables whose columns do not depend on config (assignments: `assignments_schema(scheme)`).
TABLE_SCHEMAS = (SEGMENT_PROFILES_SCHEMA, SEGMENT_CHANGELOG_SCHEMA)
