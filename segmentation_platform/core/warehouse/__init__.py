"""The warehouse: owned BY NAME writes, one schema per table, every table name.

`from segmentation_platform.core import warehouse` then `warehouse.replace_partitions(...)`,
`warehouse.tables.CLV_SCORES`, `warehouse.TableSchema`.
"""

from segmentation_platform.core.warehouse import tables
from segmentation_platform.core.warehouse._duckdb import (
    column_types,
    count_by,
    ensure_table,
    quote,
    replace_partitions,
    replace_table,
    row_count,
    table_checksum,
    table_columns,
    table_exists,
    table_ref,
)
from segmentation_platform.core.warehouse._schema import Column, TableSchema, columns

__all__ = [
    "Column",
    "TableSchema",
    "columns",
    "tables",
    "column_types",
    "count_by",
    "ensure_table",
    "quote",
    "replace_partitions",
    "replace_table",
    "row_count",
    "table_checksum",
    "table_columns",
    "table_exists",
    "table_ref",
]
