from pathlib import Path

from segmentation_platform.core import features, segments
from segmentation_platform.core.catalog import table_schemas, tables_markdown
from segmentation_platform.core.warehouse import tables

REPO = Path(__file__).resolve().parents[2]


def _schemas():
    return table_schemas(features.load_feature_config(), segments.load_scheme())


def test_docs_tables_is_generated_from_the_declarations():
    text = (REPO / "docs" / "tables.md").read_text()
    assert text == tables_markdown(_schemas()), (
        "docs/tables.md is stale: run `python -m segmentation_platform.core.catalog > docs/tables.md`"
    )


def test_every_named_table_is_declared_once():
    declared = [schema.table for schema in _schemas()]
    named = [value for name, value in vars(tables).items() if name.isupper() and isinstance(value, str)]
    assert len(declared) == len(set(declared))
    assert sorted(set(declared) - {t for t in declared if t.startswith(("raw.", "quarantine."))}) == sorted(
        named
    )


def test_every_column_is_described():
    undocumented = [f"{s.table}.{c.name}" for s in _schemas() for c in s.columns if not c.description.strip()]
    assert undocumented == []


def test_the_docs_mark_pii_columns():
    text = tables_markdown(_schemas())
    assert (
        "| `email` | VARCHAR |" in text and "(PII)" in text.split("## identity.customers")[1].split("## ")[0]
    )
