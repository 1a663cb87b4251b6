"""Table schemas declared once: the writer, the Dagster column schema, the docs and the tests
all read the same `TableSchema` (name, SQL type, description, PII flag per column)."""

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    description: str
    pii: bool = False


@dataclass(frozen=True)
class TableSchema:
    """One warehouse table: `schema.table`, one row per `grain`, its columns in order."""

    table: str
    grain: str
    columns: tuple[Column, ...]
    partition_column: str | None = None
    description: str = ""
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names = [c.name for c in self.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"{self.table}: columns declared twice: {', '.join(duplicated)}")
        if self.partition_column is not None and self.partition_column not in names:
            raise ValueError(f"{self.table}: partition column {self.partition_column!r} is not a column")
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def sql_columns(self) -> dict[str, str]:
        """name -> SQL type, what `ensure_table` / `replace_partitions(columns=...)` take."""
        return {c.name: c.sql_type for c in self.columns}

    @property
    def pii_columns(self) -> set[str]:
        return {c.name for c in self.columns if c.pii}

    def column(self, name: str) -> Column:
        return self._by_name[name]

    def extended(self, columns: Iterable[Column], table: str | None = None) -> "TableSchema":
        """The same table with more columns (e.g. a raw source table plus load metadata)."""
        return TableSchema(
            table or self.table,
            self.grain,
            self.columns + tuple(columns),
            self.partition_column,
            self.description,
        )


def columns(*specs: tuple) -> tuple[Column, ...]:
    """Terse declaration: `columns(("customer_key", "VARCHAR", "Stable person key"), ...)`;
    a fourth element `True` marks the column as PII."""
    return tuple(Column(*spec) for spec in specs)
