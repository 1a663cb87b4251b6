"""The `raw.<source>` and `quarantine.<source>` tables, declared once: the parser, the writer
(the ingestion asset), the assets' column schemas and the docs read these. A raw table's
columns are its source contract's plus the load metadata; both are partitioned by day."""

from segmentation_platform.contracts import CONTRACTS, SourceContract
from segmentation_platform.core.warehouse import TableSchema, columns, tables

PARTITION_COLUMN = "_partition_date"

LOAD_METADATA = columns(
    (PARTITION_COLUMN, "DATE", "Daily partition = the day in the landing file name"),
    ("_source_file", "VARCHAR", "Landing file the row came from"),
    ("_line", "BIGINT", "Line of the row in its landing file (header = 1)"),
    ("_loaded_at", "TIMESTAMP", "When the row was loaded (UTC)"),
)
_METADATA = {c.name: c for c in LOAD_METADATA}
METADATA_COLUMNS = {c.name: c.sql_type for c in LOAD_METADATA}


def raw_schema(contract: SourceContract) -> TableSchema:
    """Accepted rows of one source: the contract's columns, typed, then the load metadata."""
    return TableSchema(
        table=tables.raw_table(contract.name),
        grain=f"landing row ({', '.join(contract.key)} x day)",
        partition_column=PARTITION_COLUMN,
        description=f"{contract.description} Rows that passed the contract, typed.",
        columns=columns(
            *(
                (c.name, c.duckdb_type, c.description + ("" if not c.required else " (required)"), c.pii)
                for c in contract.columns
            )
        )
        + LOAD_METADATA,
    )


def quarantine_schema(source: str) -> TableSchema:
    """Rejected rows of one source, one reason each (the same columns for every source)."""
    return TableSchema(
        table=tables.quarantine_table(source),
        grain="rejected landing row",
        partition_column=PARTITION_COLUMN,
        description=f"Rows of {source} landing files rejected by the contract, one reason each.",
        columns=(_METADATA[PARTITION_COLUMN], _METADATA["_source_file"], _METADATA["_line"])
        + columns(
            ("column_name", "VARCHAR", "Column that failed (NULL when the row itself was malformed)"),
            ("reason", "VARCHAR", "What was wrong"),
            ("raw_record", "VARCHAR", "The raw line as it stood in the file"),
        )
        + (_METADATA["_loaded_at"],),
    )


def raw_table_columns(contract: SourceContract) -> dict[str, str]:
    """name -> SQL type of `raw_schema(contract)`, what `ensure_table` takes."""
    return raw_schema(contract).sql_columns


TABLE_SCHEMAS = tuple(
    schema
    for contract in CONTRACTS.values()
    for schema in (raw_schema(contract), quarantine_schema(contract.name))
)
