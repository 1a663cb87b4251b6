"""The identity multi-asset: column schemas from the core declarations, code_version from the
settings that change results only, and a materialization writing exactly the declared tables."""

from datetime import datetime

import dagster as dg
import duckdb
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import identity, warehouse
from segmentation_platform.core.identity import TABLE_SCHEMAS, load_identity_config
from segmentation_platform.core.ingestion import raw_table_columns
from segmentation_platform.defs._lib.config import load_platform_config
from segmentation_platform.defs._lib.keys import key_of
from segmentation_platform.defs.identity.assets import build_identity_assets
from segmentation_platform.defs.identity.definitions import build_defs

CRM = [
    dict(contact_id="K1", updated_at=datetime(2025, 1, 2), first_name="Robert", last_name="Smith",
         email="bob.smith@example.com", phone="+1 212 456 7890", birth_date=datetime(1980, 5, 1).date()),
    dict(contact_id="K2", updated_at=datetime(2025, 1, 3), first_name="Mary", last_name="Jones",
         email="mary@example.com"),
]  # fmt: skip
WEB = [
    dict(order_id="W1", account_id="A1", ordered_at=datetime(2025, 1, 5), amount=10.0,
         email=" Bob.Smith@Example.com ", first_name="Bob", last_name="Smith"),
]  # fmt: skip


def the_asset(config=None):
    (asset,) = build_identity_assets(config or load_identity_config())
    return asset


def test_column_schemas_are_the_core_declarations():
    specs = {spec.key: spec for spec in the_asset().specs}
    assert list(specs) == [key_of(schema.table) for schema in TABLE_SCHEMAS]
    for schema in TABLE_SCHEMAS:
        spec = specs[key_of(schema.table)]
        assert spec.description == schema.description
        assert spec.metadata["dagster/table_name"] == f"warehouse.{schema.table}"
        shown = spec.metadata["dagster/column_schema"].columns
        assert [(c.name, c.type, c.description, "pii" in c.tags) for c in shown] == [
            (c.name, c.sql_type, c.description, c.pii) for c in schema.columns
        ]
    assert {c.name for c in identity.CUSTOMERS_SCHEMA.columns if c.pii} >= {"email", "phone", "birth_date"}


def test_runtime_knobs_do_not_change_code_version_results_changing_keys_do():
    def code_version(overrides):
        return {spec.code_version for spec in the_asset(load_identity_config(overrides=overrides)).specs}

    (base,) = code_version({})
    assert code_version({"runtime": {"duckdb_memory_limit": "3GB"}}) == {base}
    for changes_results in (
        {"probabilistic": {"match_probability_threshold": 0.995}},
        {"probabilistic": {"name_similarity_thresholds": [0.9, 0.8]}},
        {"clustering": {"max_cluster_size": 50}},
        {"version": 2},
    ):
        assert code_version(changes_results) != {base}, changes_results


def test_build_defs_takes_the_platform_config():
    (asset,) = build_defs(load_platform_config()).assets
    assert set(asset.keys) == {key_of(schema.table) for schema in TABLE_SCHEMAS}
    assert len(asset.check_specs_by_output_name) == 3


def insert(conn, source: str, rows: list[dict]) -> None:
    contract = CONTRACTS[source]
    full = [
        {"_partition_date": row[contract.event_time].date(), "_source_file": "test.csv", "_line": i + 2}
        | {"_loaded_at": datetime(2025, 3, 5)}
        | row
        for i, row in enumerate(rows)
    ]
    names = list(dict.fromkeys(name for row in full for name in row))
    conn.register("_rows", pa.table({name: [row.get(name) for row in full] for name in names}))
    conn.execute(f"INSERT INTO raw.{source} BY NAME SELECT * FROM _rows")
    conn.unregister("_rows")


def test_materialization_writes_exactly_the_declared_tables(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        for contract in CONTRACTS.values():
            warehouse.ensure_table(conn, f"raw.{contract.name}", raw_table_columns(contract))
        insert(conn, "crm_contacts", CRM)
        insert(conn, "web_orders", WEB)
    for _ in range(2):  # the second run appends to the changelog and checks key stability
        result = dg.materialize([the_asset()], resources={"duckdb": DuckDBResource(database=str(path))})
        assert result.success
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks == {
            "every_record_has_one_key": True,
            "no_cluster_above_cap": True,
            "keys_stable_unless_logged": True,
        }
    with duckdb.connect(str(path), read_only=True) as conn:
        for schema in TABLE_SCHEMAS:
            assert list(warehouse.column_types(conn, schema.table).items()) == list(
                schema.sql_columns.items()
            )
        customers = conn.execute(f"SELECT count(*) FROM {identity.CUSTOMERS_SCHEMA.table}").fetchall()[0][0]
    assert customers == 2  # Bob's web account joins Robert's CRM contact on the email
