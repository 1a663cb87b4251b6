"""The two churn tables, declared once: the writer, the asset's column schema and the docs read these."""

from segmentation_platform.core.warehouse import TableSchema, columns, tables

CHURN_SCORES_SCHEMA = TableSchema(
    table=tables.CHURN_SCORES,
    grain="customer x snapshot",
    partition_column="snapshot_date",
    columns=columns(
        ("customer_key", "VARCHAR", "Customer key"),
        ("snapshot_date", "DATE", "Snapshot scored (features as of 00:00 on this date)"),
        ("churn_probability", "DOUBLE", "P(the customer has stopped buying for good), champion model"),
        ("risk_tier", "VARCHAR", "Risk tier by churn_probability (thresholds in config/churn.yaml)"),
        (
            "survival_churn_probability",
            "DOUBLE",
            "Same probability from the survival model: S(t_max | x), its plateau at the longest follow-up",
        ),
        ("classifier_churn_probability", "DOUBLE", "Same probability from the calibrated classifier"),
        ("champion_model", "VARCHAR", "Model behind churn_probability: churn_survival or churn_classifier"),
        ("horizon_days", "INTEGER", "Minimum follow-up H in days of a training snapshot"),
    ),
)

CHURN_DRIVERS_SCHEMA = TableSchema(
    table=tables.CHURN_DRIVERS,
    grain="snapshot x model x feature",
    partition_column="snapshot_date",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot the model was fitted at"),
        ("model", "VARCHAR", "churn_survival or churn_classifier"),
        ("is_champion", "BOOLEAN", "Whether this model scored the snapshot"),
        ("feature", "VARCHAR", "Model input (category=level for one-hot survival inputs)"),
        (
            "importance",
            "DOUBLE",
            "abs(coefficient) per SD (survival) or log-loss increase when permuted (classifier)",
        ),
        ("importance_kind", "VARCHAR", "abs_coefficient or permutation_log_loss"),
        ("effect", "DOUBLE", "Hazard ratio (Cox) or time ratio (Weibull AFT) per SD of the feature"),
        ("effect_kind", "VARCHAR", "hazard_ratio_per_sd or time_ratio_per_sd"),
        ("p_value", "DOUBLE", "Wald p-value of the survival coefficient"),
        ("direction", "VARCHAR", "raises churn, lowers churn or mixed"),
    ),
)

TABLE_SCHEMAS = (CHURN_SCORES_SCHEMA, CHURN_DRIVERS_SCHEMA)
