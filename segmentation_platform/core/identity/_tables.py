"""The nine `identity.*` tables, declared once: the writer (`_resolve`), the assets' column
schemas and the docs read these. All are replaced on each run except `changelog`, `model`
and `match_weights`, which are appended to."""

from segmentation_platform.core.warehouse import TableSchema, columns, tables

PII = True

IDENTITY_RECORDS_SCHEMA = TableSchema(
    table=tables.IDENTITY_RECORDS,
    grain="person record (source, source_id)",
    description="Every person-identifying source record (source, source_id), normalized: emails trimmed and "
    "lower-cased, phones E.164, names Unicode-folded, postcodes canonical; with its customer_key.",
    columns=columns(
        ("record_id", "BIGINT", "Internal id of a source record (one per source, source_id)"),
        ("source", "VARCHAR", "Source system of the record (a landing source name)"),
        ("source_id", "VARCHAR", "The record's id in its source (account, contact, receipt, subscriber ...)"),
        ("first_name", "VARCHAR", "First name, normalized for matching", PII),
        (
            "first_name_forms",
            "VARCHAR[]",
            "Nickname-expanded forms of the first name used by the comparisons",
        ),
        ("last_name", "VARCHAR", "Last name, normalized for matching", PII),
        ("email", "VARCHAR", "Email, trimmed and lower-cased", PII),
        ("email_local", "VARCHAR", "Part of the email before @, for fuzzy comparison", PII),
        ("phone", "VARCHAR", "Phone in E.164", PII),
        ("address", "VARCHAR", "Street address, normalized for matching", PII),
        ("postcode", "VARCHAR", "Postcode, canonical form", PII),
        ("birth_date", "DATE", "Date of birth", PII),
        ("loyalty_id", "VARCHAR", "Loyalty card id"),
        ("display_first_name", "VARCHAR", "First name as the source spelled it, for the golden record", PII),
        ("display_last_name", "VARCHAR", "Last name as the source spelled it, for the golden record", PII),
        ("display_address", "VARCHAR", "Address as the source spelled it, for the golden record", PII),
        ("first_seen_at", "TIMESTAMP", "Earliest event time of the record"),
        ("last_seen_at", "TIMESTAMP", "Latest event time of the record"),
        # A sum of row counts: DuckDB widens it to HUGEINT.
        ("n_source_rows", "HUGEINT", "Source rows folded into this record"),
        ("email_consent", "BOOLEAN", "Consent to email marketing (latest CRM value)"),
        ("sms_consent", "BOOLEAN", "Consent to SMS marketing (latest CRM value)"),
        ("consent_updated_at", "TIMESTAMP", "When the consent values were last updated"),
        ("email_unsubscribed", "BOOLEAN", "Unsubscribed from email (email events)"),
        ("customer_key", "VARCHAR", "Stable customer key the record resolves to"),
    ),
)

IDENTITY_LINKS_SCHEMA = TableSchema(
    table=tables.IDENTITY_LINKS,
    grain="pair of records x link type",
    description="Evidence between records: deterministic (email, phone, loyalty id, cross-references) and "
    "probabilistic Splink links with match probability and the comparison levels behind them.",
    columns=columns(
        ("source_l", "VARCHAR", "Source of the left record"),
        ("source_id_l", "VARCHAR", "Source id of the left record"),
        ("source_r", "VARCHAR", "Source of the right record"),
        ("source_id_r", "VARCHAR", "Source id of the right record"),
        ("record_id_l", "BIGINT", "record_id of the left record"),
        ("record_id_r", "BIGINT", "record_id of the right record"),
        (
            "link_type",
            "VARCHAR",
            "deterministic rule (email, phone, loyalty id, cross-reference) or probabilistic",
        ),
        ("match_probability", "DOUBLE", "Splink match probability (1 for deterministic links)"),
        ("match_weight", "DOUBLE", "Log2 Bayes factor of the match"),
        ("accepted", "BOOLEAN", "Link used to form clusters"),
        ("refused_by_guard", "BOOLEAN", "Link refused by the over-merge guard"),
        ("evidence", "VARCHAR", "Why: the comparison levels or rule behind the link"),
        ("model_version", "VARCHAR", "Splink model version that scored it"),
    ),
)

CUSTOMER_KEY_MAP_SCHEMA = TableSchema(
    table=tables.CUSTOMER_KEY_MAP,
    grain="source record (source, source_id)",
    description="source, source_id -> customer_key. Keys are stable across runs: the oldest key "
    "survives a merge, a split mints a new key.",
    columns=columns(
        ("source", "VARCHAR", "Source system of the record (a landing source name)"),
        ("source_id", "VARCHAR", "The record's id in its source (account, contact, receipt, subscriber ...)"),
        ("customer_key", "VARCHAR", "Stable customer key the record resolves to"),
        ("assigned_at", "TIMESTAMP", "When the key was first assigned to the record"),
    ),
)

IDENTITY_CHANGELOG_SCHEMA = TableSchema(
    table=tables.IDENTITY_CHANGELOG,
    grain="key change (appended by each run)",
    description="Append-only log of every new key, merge, split and retirement with its evidence.",
    columns=columns(
        ("changed_at", "TIMESTAMP", "When the change was recorded"),
        ("change_type", "VARCHAR", "new, merge, split or retire"),
        ("customer_key", "VARCHAR", "Stable customer key the records resolve to after the change"),
        ("previous_keys", "VARCHAR[]", "Keys the records had before the change"),
        ("retired_keys", "VARCHAR[]", "Keys retired by the change"),
        ("n_records", "BIGINT", "Records in the cluster"),
        ("n_records_moved", "BIGINT", "Records whose key changed"),
        ("evidence", "VARCHAR", "Why: the links behind the key change (JSON)"),
    ),
)

CUSTOMERS_SCHEMA = TableSchema(
    table=tables.CUSTOMERS,
    grain="customer_key",
    description="Golden record per customer_key by survivorship (most trusted / recent / complete source per "
    "field), first seen, sources present, consent status.",
    columns=columns(
        ("customer_key", "VARCHAR", "Stable customer key"),
        ("first_name", "VARCHAR", "First name (survivor value)", PII),
        ("last_name", "VARCHAR", "Last name (survivor value)", PII),
        ("birth_date", "DATE", "Date of birth", PII),
        ("email", "VARCHAR", "Email, trimmed and lower-cased", PII),
        ("phone", "VARCHAR", "Phone in E.164", PII),
        ("address", "VARCHAR", "Street address (survivor value)", PII),
        ("postcode", "VARCHAR", "Postcode, canonical form", PII),
        ("first_seen_at", "TIMESTAMP", "Earliest event time of the customer's records"),
        ("last_seen_at", "TIMESTAMP", "Latest event time of the customer's records"),
        ("sources", "VARCHAR", "Sources the customer's records come from"),
        ("n_sources", "BIGINT", "Number of distinct sources"),
        ("n_records", "BIGINT", "Records of the customer"),
        ("email_consent", "BOOLEAN", "Consent to email marketing (latest CRM value)"),
        ("sms_consent", "BOOLEAN", "Consent to SMS marketing (latest CRM value)"),
        ("consent_updated_at", "TIMESTAMP", "When the consent values were last updated"),
        ("email_unsubscribed", "BOOLEAN", "Unsubscribed from email (email events)"),
        ("email_marketable", "BOOLEAN", "Email consent given, not unsubscribed and an email known"),
        ("sms_marketable", "BOOLEAN", "SMS consent given and a phone known"),
        ("is_review_flagged", "BOOLEAN", "The customer's cluster is flagged for manual review"),
    ),
)

IDENTITY_REVIEW_FLAGS_SCHEMA = TableSchema(
    table=tables.IDENTITY_REVIEW_FLAGS,
    grain="cluster the over-merge guard split or flagged (by customer_key)",
    description="Clusters the over-merge guard split or flagged (size cap, conflicting birth dates, ...).",
    columns=columns(
        ("flagged_at", "TIMESTAMP", "When the guard flagged the cluster"),
        ("customer_key", "VARCHAR", "Customer key of the cluster"),
        ("reason", "VARCHAR", "Why the cluster was split or flagged"),
        ("needs_review", "BOOLEAN", "A person should look at it"),
        ("original_cluster_size", "BIGINT", "Records in the cluster before the guard split it"),
        ("n_records", "BIGINT", "Records in the cluster"),
        ("refused_links", "BIGINT", "Links the guard refused in the cluster"),
        ("refused_link_types", "VARCHAR", "Link types of the refused links"),
    ),
)

IDENTITY_IDENTIFIERS_SCHEMA = TableSchema(
    table=tables.IDENTITY_IDENTIFIERS,
    grain="record x identifier (id_type, value)",
    description="Every normalized email, phone and loyalty id a record carried, with how many records share "
    "it and whether it was too common (hub) or ambiguous (shared by different people) to link on.",
    columns=columns(
        ("source", "VARCHAR", "Source system of the record (a landing source name)"),
        ("source_id", "VARCHAR", "The record's id in its source (account, contact, receipt, subscriber ...)"),
        ("id_type", "VARCHAR", "email, phone or loyalty_id"),
        ("value", "VARCHAR", "The normalized identifier", PII),
        ("n_records_sharing", "BIGINT", "Records carrying this identifier"),
        ("is_hub", "BOOLEAN", "Too many records share it to link on"),
        ("is_ambiguous", "BOOLEAN", "Shared by records of conflicting people: not linked on"),
    ),
)

IDENTITY_MODEL_SCHEMA = TableSchema(
    table=tables.IDENTITY_MODEL,
    grain="model version (appended when a run makes a new one)",
    description="Versioned Splink model artefacts (settings JSON) with training notes.",
    columns=columns(
        ("model_version", "VARCHAR", "Splink model version (hash of its settings JSON)"),
        ("created_at", "TIMESTAMP", "When the model was trained or loaded"),
        ("config_version", "INTEGER", "Version of config/identity.yaml"),
        ("trained", "BOOLEAN", "Parameters estimated on this data (false: defaults or a previous model)"),
        ("n_input_records", "BIGINT", "Records the model was trained on"),
        ("settings_json", "VARCHAR", "Splink settings with the trained parameters"),
        ("notes", "VARCHAR", "Training notes (EM passes, warnings)"),
    ),
)

IDENTITY_MATCH_WEIGHTS_SCHEMA = TableSchema(
    table=tables.IDENTITY_MATCH_WEIGHTS,
    grain="model version x comparison level",
    description="Per comparison level m, u and match weight of each model version: why records matched.",
    columns=columns(
        ("model_version", "VARCHAR", "Splink model version"),
        ("comparison", "VARCHAR", "Comparison (column) of the model"),
        ("comparison_sort_order", "INTEGER", "Order of the comparison in the model"),
        ("comparison_vector_value", "INTEGER", "Level index within the comparison"),
        ("level", "VARCHAR", "Comparison level label"),
        ("sql_condition", "VARCHAR", "SQL condition of the level"),
        ("is_null_level", "BOOLEAN", "Level for missing values"),
        ("m_probability", "DOUBLE", "P(level | match)"),
        ("u_probability", "DOUBLE", "P(level | non-match)"),
        ("bayes_factor", "DOUBLE", "m / u"),
        ("match_weight", "DOUBLE", "Log2 Bayes factor of the level"),
        ("has_tf_adjustments", "BOOLEAN", "Term-frequency adjustment applied"),
        ("tf_adjustment_column", "VARCHAR", "Column whose term frequencies adjust the weight"),
    ),
)

# Every table one identity run writes, in the order the multi-asset lists them.
TABLE_SCHEMAS = (
    IDENTITY_RECORDS_SCHEMA,
    IDENTITY_LINKS_SCHEMA,
    CUSTOMER_KEY_MAP_SCHEMA,
    IDENTITY_CHANGELOG_SCHEMA,
    CUSTOMERS_SCHEMA,
    IDENTITY_REVIEW_FLAGS_SCHEMA,
    IDENTITY_IDENTIFIERS_SCHEMA,
    IDENTITY_MODEL_SCHEMA,
    IDENTITY_MATCH_WEIGHTS_SCHEMA,
)
