"""What a churn fit reads from the warehouse: the training sample of feature snapshots and the
purchases its labels need (nothing on or after the snapshot)."""

from datetime import date, datetime

import pandas as pd

from segmentation_platform.core import features, warehouse
from segmentation_platform.core.models.churn._config import ChurnConfig
from segmentation_platform.core.warehouse import tables


def load_purchases(conn, customer_keys: pd.Series, since: date, cutoff: date) -> pd.DataFrame:
    """Purchases of the given customers in [since, cutoff): all the labels need, nothing later.

    The orders are the feature store's (`features.customer_orders_sql`), the one definition
    of a customer's orders that every model shares."""
    empty = pd.DataFrame(
        {"customer_key": pd.Series(dtype=object), "purchased_at": pd.Series(dtype="datetime64[us]")}
    )
    if not warehouse.table_exists(conn, features.KEY_MAP_TABLE) or customer_keys.empty:
        return empty
    conn.register("_churn_keys", pd.DataFrame({"customer_key": customer_keys.drop_duplicates().to_numpy()}))
    try:
        return conn.execute(
            f"SELECT customer_key, purchased_at FROM ({features.customer_orders_sql(conn)}) "
            "SEMI JOIN _churn_keys USING (customer_key) WHERE purchased_at >= $since",
            {
                "since": datetime.combine(since, datetime.min.time()),
                "cutoff": features.snapshot_cutoff(cutoff),
            },
        ).df()
    finally:
        conn.unregister("_churn_keys")


def load_training_frame(conn, snapshot: date, config: ChurnConfig) -> pd.DataFrame:
    """The current snapshot in full plus a customer-hash sample of the past complete snapshots."""
    table = warehouse.table_ref(tables.CUSTOMER_FEATURES)
    cutoff = pd.Timestamp(snapshot) - pd.Timedelta(days=config.horizon_days)
    past = [
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT snapshot_date FROM {table} WHERE snapshot_date <= ? ORDER BY 1 DESC LIMIT ?",
            [cutoff.date(), config.max_snapshots],
        ).fetchall()
    ]
    eligible = ""
    if config.frequency_column:
        eligible = (
            f" AND coalesce({warehouse.quote(config.frequency_column)}, 0) >= {float(config.min_frequency)}"
        )
    current = conn.execute(f"SELECT * FROM {table} WHERE snapshot_date = ?{eligible}", [snapshot]).df()
    if not past:
        return current
    rows = conn.execute(
        f"SELECT count(*) FROM {table} WHERE snapshot_date IN (SELECT unnest(?)){eligible}", [past]
    ).fetchone()[0]
    share = min(1.0, 1.2 * config.max_rows / max(rows, 1))
    history = conn.execute(
        f"SELECT * FROM {table} WHERE snapshot_date IN (SELECT unnest(?)){eligible} "
        f"AND hash(customer_key) % 1000000 < {int(share * 1_000_000)}",
        [past],
    ).df()
    return pd.concat([history, current], ignore_index=True)
