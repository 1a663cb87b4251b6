"""Every warehouse table's schema in one list, in the order the data flows.

Each domain declares its tables once (`<domain>._tables`); this module only collects them,
so the docs generator (`docs/tables.md`), the pipeline test that compares every warehouse
table with its declaration, and a notebook user asking "what is in the warehouse" read the
same list. Two schemas depend on config (the feature store's optional columns, the segment
scheme's axes): the caller passes the config in.

`python -m segmentation_platform.core.catalog > docs/tables.md` regenerates the docs with the
packaged config.
"""

from segmentation_platform.core import activation, features, identity, ingestion, measurement, segments
from segmentation_platform.core.models import churn, clustering, clv, rfm
from segmentation_platform.core.models.registry import REGISTRY_SCHEMA
from segmentation_platform.core.warehouse import TableSchema


def table_schemas(
    feature_config: features.FeatureConfig, scheme: segments.SegmentScheme
) -> tuple[TableSchema, ...]:
    """Every table the platform writes, declared once, under the given config."""
    return (
        *ingestion.TABLE_SCHEMAS,
        *identity.TABLE_SCHEMAS,
        features.customer_features_schema(feature_config),
        *rfm.TABLE_SCHEMAS,
        *clv.TABLE_SCHEMAS,
        *churn.TABLE_SCHEMAS,
        *clustering.TABLE_SCHEMAS,
        REGISTRY_SCHEMA,
        segments.assignments_schema(scheme),
        *segments.TABLE_SCHEMAS,
        *activation.TABLE_SCHEMAS,
        *measurement.TABLE_SCHEMAS,
    )


def tables_markdown(schemas: tuple[TableSchema, ...]) -> str:
    """The warehouse reference: one section per table with its grain and typed columns."""
    lines = [
        "<!-- Generated from the TableSchema declarations (segmentation_platform/core/catalog.py):",
        "     python -m segmentation_platform.core.catalog > docs/tables.md -->",
        "# Warehouse tables",
        "",
        "Every table of `data/warehouse.duckdb`, as its writer declares it. The asset key of a",
        "table is its name with `/` for `.` (e.g. `models.clv_scores` is `models/clv_scores`).",
        "`raw.<source>` and `quarantine.<source>` follow each landing source's contract",
        "([`data/README.md`](../data/README.md)).",
        "Columns marked PII hold personal data: they never leave through a marketing export raw,",
        "and never appear in logs or run metadata.",
        "",
        "| table | one row per | partitioned by |",
        "|---|---|---|",
    ]
    lines += [
        f"| [`{s.table}`](#{_anchor(s.table)}) | {s.grain} | {s.partition_column or '(not partitioned)'} |"
        for s in schemas
    ]
    for schema in schemas:
        lines += ["", f"## {schema.table}", ""]
        if schema.description:
            lines += [schema.description, ""]
        lines += [
            f"One row per {schema.grain}."
            + (f" Partitioned by `{schema.partition_column}`." if schema.partition_column else ""),
            "",
            "| column | type | description |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{c.name}` | {c.sql_type} | {_cell(c.description)}{' (PII)' if c.pii else ''} |"
            for c in schema.columns
        ]
    return "\n".join(lines) + "\n"


def _anchor(table: str) -> str:
    return table.replace(".", "").lower()  # GitHub drops the dot of a heading


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    import sys

    sys.stdout.write(tables_markdown(table_schemas(features.load_feature_config(), segments.load_scheme())))
