"""What the feature store's checks decide, on the stored snapshots: one row per customer per
snapshot with a customer_key, and nothing read at or after a snapshot's instant."""

from dataclasses import dataclass
from datetime import date

from segmentation_platform.core import warehouse
from segmentation_platform.core.warehouse import tables

_IN_RUN = "snapshot_date IN (SELECT unnest(?))"


@dataclass(frozen=True)
class SnapshotChecks:
    duplicated_customers: int  # (snapshot, customer) pairs stored more than once
    rows_without_customer_key: int
    rows_with_data_at_or_after_snapshot: int

    @property
    def unique(self) -> bool:
        return self.duplicated_customers == 0 and self.rows_without_customer_key == 0

    @property
    def no_future(self) -> bool:
        return self.rows_with_data_at_or_after_snapshot == 0


def _count(conn, sql: str, dates: list[date]) -> int:
    # fetchall, not fetchone: duckdb 2.0 keeps a fetchone() result open and refuses the next register().
    return conn.execute(sql, [dates]).fetchall()[0][0]


def check_snapshots(conn, dates: list[date]) -> SnapshotChecks:
    """The stored `features.customer_features` rows of `dates`, checked."""
    table = warehouse.table_ref(tables.CUSTOMER_FEATURES)
    return SnapshotChecks(
        duplicated_customers=_count(
            conn,
            f"SELECT count(*) FROM (SELECT snapshot_date, customer_key FROM {table} WHERE {_IN_RUN} "
            "GROUP BY ALL HAVING count(*) > 1)",
            dates,
        ),
        rows_without_customer_key=_count(
            conn, f"SELECT count(*) FROM {table} WHERE {_IN_RUN} AND customer_key IS NULL", dates
        ),
        rows_with_data_at_or_after_snapshot=_count(
            conn,
            f"SELECT count(*) FROM {table} WHERE {_IN_RUN} AND (last_seen_at >= snapshot_date "
            "OR last_purchase_at >= snapshot_date OR first_seen_at >= snapshot_date OR recency_days < 1)",
            dates,
        ),
    )
