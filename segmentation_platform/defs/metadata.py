"""Metadata every asset carries, built one way."""

import hashlib

import dagster as dg

from segmentation_platform.contracts import SourceContract

OWNER = "team:data-platform"


def column_schema(columns: dict[str, tuple[str, str]], pii: set[str] = frozenset()) -> dg.TableSchema:
    """`columns` maps name -> (SQL type, description)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=sql_type,
                description=description,
                tags={"pii": ""} if name in pii else {},
            )
            for name, (sql_type, description) in columns.items()
        ]
    )


def contract_schema(contract: SourceContract, extra: dict[str, tuple[str, str]]) -> dg.TableSchema:
    columns = {
        c.name: (c.duckdb_type, c.description + ("" if not c.required else " (required)"))
        for c in contract.columns
    }
    return column_schema(columns | extra, pii=set(contract.pii_columns))


def version_of(*parts: object) -> str:
    """A code_version that changes whenever any of its inputs (logic version, contract, config) does."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def table_metadata(table: str, schema: dg.TableSchema) -> dict:
    return {"dagster/table_name": f"warehouse.{table}", "dagster/column_schema": schema}
