"""The two CLV tables, declared once: the writer, the asset's column schema and the docs read these."""

from segmentation_platform.core.warehouse import TableSchema, columns, tables

CLV_SCORES_SCHEMA = TableSchema(
    table=tables.CLV_SCORES,
    grain="customer x snapshot",
    partition_column="snapshot_date",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot (as of 00:00 on this date)"),
        ("customer_key", "VARCHAR", "Customer"),
        ("frequency", "DOUBLE", "Repeat purchase days before the snapshot (x)"),
        ("recency", "DOUBLE", "Days from first to last purchase day (t_x)"),
        ("T", "DOUBLE", "Days from first purchase day to the snapshot's last day"),
        ("p_alive", "DOUBLE", "Probability the customer is still active (BG/NBD)"),
        ("expected_purchases", "DOUBLE", "Expected purchase days over the CLTV horizon"),
        ("expected_value_per_order", "DOUBLE", "Expected margin (or revenue) per order (Gamma-Gamma)"),
        ("cltv", "DOUBLE", "Discounted expected margin (or revenue) over the horizon, in money"),
        ("value_basis", "VARCHAR", "margin or revenue: what cltv is measured in"),
    ),
)

CLV_VALIDATION_SCHEMA = TableSchema(
    table=tables.CLV_VALIDATION,
    grain="snapshot x decile of predicted purchases",
    partition_column="snapshot_date",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot the validation belongs to"),
        ("decile", "INTEGER", "Decile of predicted holdout purchases (1 = highest)"),
        ("customers", "BIGINT", "Customers in the decile"),
        ("predicted_purchases_mean", "DOUBLE", "Mean predicted purchase days in the holdout"),
        ("actual_purchases_mean", "DOUBLE", "Mean actual purchase days in the holdout"),
        ("actual_revenue_mean", "DOUBLE", "Mean actual revenue in the holdout"),
    ),
)

TABLE_SCHEMAS = (CLV_SCORES_SCHEMA, CLV_VALIDATION_SCHEMA)
