"""The RFM table, declared once: the writer, the asset's column schema and the docs read it."""

from segmentation_platform.core.warehouse import TableSchema, columns, tables

RFM_SCORES_SCHEMA = TableSchema(
    table=tables.RFM_SCORES,
    grain="customer x snapshot",
    partition_column="snapshot_date",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot the scores are as of (00:00 on this date)"),
        ("customer_key", "VARCHAR", "Customer key; only customers with at least one purchase are scored"),
        ("recency_days", "INTEGER", "Days from the last purchase date to the snapshot date"),
        ("frequency", "BIGINT", "Orders before the snapshot"),
        ("monetary_total", "DOUBLE", "Revenue before the snapshot"),
        ("r_score", "INTEGER", "Recency quintile, 5 = most recent"),
        ("f_score", "INTEGER", "Frequency quintile, 5 = most orders"),
        ("m_score", "INTEGER", "Monetary quintile, 5 = most revenue"),
        ("fm_score", "INTEGER", "Mean of F and M scores, rounded half up"),
        ("rfm_code", "VARCHAR", "R, F and M scores as one code, e.g. 545"),
        ("rfm_segment", "VARCHAR", "Named segment of the code (config/rfm_segments.yaml)"),
        ("segment_map_version", "INTEGER", "Version of the segment map that named the segment"),
    ),
)
TABLE_SCHEMAS = (RFM_SCORES_SCHEMA,)
