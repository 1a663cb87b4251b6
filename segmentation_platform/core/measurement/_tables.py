"""The four `measurement.*` tables, declared once: the writers (segment_kpis, channel_kpis,
migration_matrix, lift), the assets' column schemas and the docs read these. Each is
partitioned by snapshot: a run replaces its snapshots' rows."""

from segmentation_platform.core.warehouse import TableSchema, columns, tables

SEGMENT_KPIS_SCHEMA = TableSchema(
    table=tables.SEGMENT_KPIS,
    grain="snapshot x action segment",
    partition_column="snapshot_date",
    description="Per snapshot and action segment: size, predicted value and what the segment went on to spend "
    "in the following 30/90 days (NULL with a note until those days are loaded), and realized churn.",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot"),
        ("action_segment", "VARCHAR", "Action segment"),
        ("customers", "BIGINT", "Customers in the segment"),
        ("share_of_customers", "DOUBLE", "Share of all customers at the snapshot"),
        ("mean_cltv", "DOUBLE", f"Mean predicted CLTV ({tables.CLV_SCORES})"),
        ("total_cltv", "DOUBLE", "Sum of predicted CLTV"),
        ("mean_churn_probability", "DOUBLE", f"Mean churn propensity ({tables.CHURN_SCORES})"),
        (
            "revenue_30d",
            "DOUBLE",
            "Revenue in the 30 days from the snapshot; NULL until those days are loaded",
        ),
        ("margin_30d", "DOUBLE", "Revenue minus cost in the 30 days (purchases with a cost)"),
        ("revenue_per_customer_30d", "DOUBLE", "revenue_30d / customers"),
        ("conversion_30d", "DOUBLE", "Share of customers with a purchase in the 30 days"),
        ("revenue_90d", "DOUBLE", "Revenue in the 90 days from the snapshot; NULL until loaded"),
        ("margin_90d", "DOUBLE", "Revenue minus cost in the 90 days"),
        ("revenue_per_customer_90d", "DOUBLE", "revenue_90d / customers"),
        ("realized_churn_rate_90d", "DOUBLE", "Share of customers with no purchase in the 90 days"),
        ("data_through", "DATE", "First day without loaded purchases (the laggiest purchase source)"),
        ("note", "VARCHAR", "Which outcome windows are still pending, and why"),
    ),
)

CHANNEL_KPIS_SCHEMA = TableSchema(
    table=tables.CHANNEL_KPIS,
    grain="snapshot x acquisition channel",
    partition_column="snapshot_date",
    description="Per snapshot and acquisition channel: CAC over the 90 days before the snapshot, LTV:CAC and "
    "payback months of the customers acquired in it.",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot"),
        (
            "acquisition_channel",
            "VARCHAR",
            "Acquisition channel (features / marketing_spend, lower-cased)",
        ),
        ("window_start", "DATE", "Start of the acquisition window (90 days before the snapshot)"),
        ("spend", "DOUBLE", "Marketing spend of the channel in the window"),
        ("new_customers", "BIGINT", "Customers whose first identified purchase fell in the window"),
        ("cac", "DOUBLE", "spend / new_customers"),
        ("mean_cltv_new_customers", "DOUBLE", "Mean predicted CLTV of the new customers at the snapshot"),
        ("ltv_to_cac", "DOUBLE", "mean_cltv_new_customers / cac"),
        (
            "monthly_margin_per_customer",
            "DOUBLE",
            "Contribution margin per customer-month of the cohort so far",
        ),
        ("payback_months", "DOUBLE", "cac / monthly_margin_per_customer"),
        ("note", "VARCHAR", "Caveats (no spend, no cost data, ...)"),
    ),
)

MIGRATION_SCHEMA = TableSchema(
    table=tables.MIGRATION,
    grain="snapshot x (from segment, to segment)",
    partition_column="snapshot_date",
    description="Customers moving between action segments from the previous snapshot to this one "
    "((new) and (gone) included): the segment history's flow matrix.",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot customers moved to"),
        (
            "previous_snapshot_date",
            "DATE",
            f"Previous snapshot in {tables.SEGMENT_ASSIGNMENTS} (NULL for the first)",
        ),
        ("from_segment", "VARCHAR", "Segment at the previous snapshot, or (new)"),
        ("to_segment", "VARCHAR", "Segment now, or (gone)"),
        ("customers", "BIGINT", "Customers making this move"),
        ("share_of_from", "DOUBLE", "customers / customers in from_segment"),
    ),
)

LIFT_SCHEMA = TableSchema(
    table=tables.LIFT,
    grain="snapshot x action segment x holdout experiment",
    partition_column="snapshot_date",
    description="Causal effect of activation per action segment: treated vs holdout conversion and revenue "
    "per customer in the 30 days after the snapshot, with 95% confidence intervals.",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot the experiment groups were fixed at"),
        ("action_segment", "VARCHAR", "Action segment"),
        ("experiment", "VARCHAR", "Holdout experiment"),
        ("outcome_window_days", "INTEGER", "Days after the snapshot outcomes are counted in"),
        ("treatment_customers", "BIGINT", "Customers not held out (intention to treat)"),
        ("holdout_customers", "BIGINT", "Customers held out"),
        ("treatment_conversion", "DOUBLE", "Share of treated with a purchase in the window"),
        ("holdout_conversion", "DOUBLE", "Share of holdout with a purchase in the window"),
        ("conversion_lift", "DOUBLE", "treatment_conversion - holdout_conversion"),
        ("conversion_lift_low", "DOUBLE", "95% CI low (Newcombe hybrid score)"),
        ("conversion_lift_high", "DOUBLE", "95% CI high (Newcombe hybrid score)"),
        ("relative_conversion_lift", "DOUBLE", "conversion_lift / holdout_conversion"),
        ("treatment_revenue_per_customer", "DOUBLE", "Mean revenue per treated customer in the window"),
        ("holdout_revenue_per_customer", "DOUBLE", "Mean revenue per holdout customer in the window"),
        ("revenue_lift", "DOUBLE", "Difference of revenue per customer"),
        ("revenue_lift_low", "DOUBLE", "95% CI low (Welch t)"),
        ("revenue_lift_high", "DOUBLE", "95% CI high (Welch t)"),
        ("incremental_revenue", "DOUBLE", "revenue_lift x treatment_customers"),
        ("note", "VARCHAR", "Pending window or small-sample caveat"),
    ),
)

TABLE_SCHEMAS = (SEGMENT_KPIS_SCHEMA, CHANNEL_KPIS_SCHEMA, MIGRATION_SCHEMA, LIFT_SCHEMA)
