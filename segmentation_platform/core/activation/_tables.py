"""The two activation tables, declared once: the writer, the asset's column schema and the docs read these."""

from segmentation_platform.core.warehouse import TableSchema, columns, tables

HOLDOUTS_SCHEMA = TableSchema(
    table=tables.HOLDOUTS,
    grain="experiment x customer x snapshot",
    partition_column="snapshot_date",
    columns=columns(
        ("snapshot_date", "DATE", "Snapshot (end of the weekly partition)"),
        ("experiment", "VARCHAR", "Holdout experiment (destinations.yaml)"),
        ("customer_key", "VARCHAR", "Held-out customer"),
        ("action_segment", "VARCHAR", "Segment of the customer at the snapshot"),
        ("bucket", "DOUBLE", "SHA-256(salt:customer_key) as a number in [0, 1); held out when below share"),
        ("share", "DOUBLE", "Configured holdout share of the experiment"),
        ("held_out_since", "DATE", "First snapshot the customer was held out in this experiment"),
    ),
)

EXPORTS_SCHEMA = TableSchema(
    table=tables.EXPORTS,
    grain="destination x snapshot (one row per export attempt kept)",
    partition_column="snapshot_date",
    columns=columns(
        ("export_id", "VARCHAR", "Unique id of the export attempt (also in the manifest)"),
        ("snapshot_date", "DATE", "Snapshot exported"),
        ("destination", "VARCHAR", "Destination name (destinations.yaml)"),
        ("destination_type", "VARCHAR", "crm_upsert_csv, map_list, cdp_traits_jsonl, ad_audience or webhook"),
        ("purpose", "VARCHAR", "marketing or service"),
        ("mode", "VARCHAR", "full or delta"),
        ("scheme_version", "VARCHAR", "Segment scheme version exported"),
        (
            "status",
            "VARCHAR",
            "success, failed, skipped (destination already holds a newer snapshot) or unchanged (it holds this exact export; nothing re-sent). A re-run that sends nothing keeps the row of the export that did.",
        ),
        ("rows", "BIGINT", "Rows in the file / records posted"),
        ("members", "BIGINT", "Customers in the destination's audience after this export"),
        ("adds", "BIGINT", "Customers new since the last successful export"),
        ("updates", "BIGINT", "Customers whose exported fields changed"),
        ("removes", "BIGINT", "Customers no longer in the audience"),
        ("excluded_holdout", "BIGINT", "Left out: in a holdout group"),
        ("excluded_no_consent", "BIGINT", "Left out: no consent for this destination"),
        ("excluded_unsubscribed", "BIGINT", "Left out: unsubscribed"),
        ("excluded_suppressed", "BIGINT", "Left out: on the suppression list"),
        ("excluded_no_contact", "BIGINT", "Left out: no usable (consented) contact point"),
        ("excluded_not_approved", "BIGINT", "Left out: the segment's playbook does not approve this usage"),
        ("webhook_batches", "BIGINT", "Webhook batches delivered"),
        ("webhook_attempts", "BIGINT", "Webhook POST attempts, retries included"),
        ("path", "VARCHAR", "Export file"),
        ("manifest_path", "VARCHAR", "Manifest that commits the export"),
        ("sha256", "VARCHAR", "SHA-256 of the export file"),
        ("started_at", "TIMESTAMP", "Export start (UTC)"),
        ("finished_at", "TIMESTAMP", "Export end (UTC)"),
        ("message", "VARCHAR", "Why it failed or was skipped (never contains PII)"),
    ),
)

TABLE_SCHEMAS = (HOLDOUTS_SCHEMA, EXPORTS_SCHEMA)
