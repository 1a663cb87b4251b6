"""Identity resolution: one multi-asset writing every `identity.*` table in one transaction.

Cumulative (unpartitioned): each run resolves all person records loaded so far, keeps
the previous run's keys (oldest key survives a merge, a split mints a new one) and
appends every change to `identity.changelog`.
"""

from datetime import UTC, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import identity, warehouse
from segmentation_platform.core.identity import load_identity_config
from segmentation_platform.defs._lib.metadata import OWNER, column_schema, table_metadata, version_of

IDENTITY_LOGIC_VERSION = "1"
IDENTITY_CONFIG = load_identity_config()
SCHEMA = "identity"
DESCRIPTIONS = {
    "records": "Every person-identifying source record (source, source_id), normalized: emails trimmed and "
    "lower-cased, phones E.164, names Unicode-folded, postcodes canonical; with its customer_key.",
    "links": "Evidence between records: deterministic (email, phone, loyalty id, cross-references) and "
    "probabilistic Splink links with match probability and the comparison levels behind them.",
    "customer_key_map": "source, source_id -> customer_key. Keys are stable across runs: the oldest key "
    "survives a merge, a split mints a new key.",
    "changelog": "Append-only log of every new key, merge, split and retirement with its evidence.",
    "customers": "Golden record per customer_key by survivorship (most trusted / recent / complete source per "
    "field), first seen, sources present, consent status.",
    "review_flags": "Clusters the over-merge guard split or flagged (size cap, conflicting birth dates, ...).",
    "identifiers": "Every normalized email, phone and loyalty id a record carried, with how many records share "
    "it and whether it was too common (hub) or ambiguous (shared by different people) to link on.",
    "model": "Versioned Splink model artefacts (settings JSON) with training notes.",
    "match_weights": "Per comparison level m, u and match weight of each model version: why records matched.",
}
# Column docs shared by the identity tables (a name means the same in each table it appears in).
_COLUMN_DOCS = {
    "record_id": "Internal id of a source record (one per source, source_id)",
    "source": "Source system of the record (a landing source name)",
    "source_id": "The record's id in its source (account, contact, receipt, subscriber ...)",
    "first_name": "First name (records: normalized for matching; customers: survivor value)",
    "first_name_forms": "Nickname-expanded forms of the first name used by the comparisons",
    "last_name": "Last name (records: normalized; customers: survivor value)",
    "email": "Email, trimmed and lower-cased",
    "email_local": "Part of the email before @, for fuzzy comparison",
    "phone": "Phone in E.164",
    "address": "Street address (records: normalized; customers: survivor value)",
    "postcode": "Postcode, canonical form",
    "birth_date": "Date of birth",
    "loyalty_id": "Loyalty card id",
    "display_first_name": "First name as the source spelled it, for the golden record",
    "display_last_name": "Last name as the source spelled it, for the golden record",
    "display_address": "Address as the source spelled it, for the golden record",
    "first_seen_at": "Earliest event time of the record(s)",
    "last_seen_at": "Latest event time of the record(s)",
    "n_source_rows": "Source rows folded into this record",
    "email_consent": "Consent to email marketing (latest CRM value)",
    "sms_consent": "Consent to SMS marketing (latest CRM value)",
    "consent_updated_at": "When the consent values were last updated",
    "email_unsubscribed": "Unsubscribed from email (email events)",
    "customer_key": "Stable customer key the record(s) resolve to",
    "source_l": "Source of the left record",
    "source_id_l": "Source id of the left record",
    "source_r": "Source of the right record",
    "source_id_r": "Source id of the right record",
    "record_id_l": "record_id of the left record",
    "record_id_r": "record_id of the right record",
    "link_type": "deterministic rule (email, phone, loyalty id, cross-reference) or probabilistic",
    "match_probability": "Splink match probability (1 for deterministic links)",
    "match_weight": "Log2 Bayes factor of the match",
    "accepted": "Link used to form clusters",
    "refused_by_guard": "Link refused by the over-merge guard",
    "evidence": "Why: the comparison levels or rule behind the link or key change",
    "model_version": "Splink model version that scored it",
    "assigned_at": "When the key was first assigned to the record",
    "changed_at": "When the change was recorded",
    "change_type": "new, merge, split or retire",
    "previous_keys": "Keys the records had before the change",
    "retired_keys": "Keys retired by the change",
    "n_records": "Records in the cluster / customer",
    "n_records_moved": "Records whose key changed",
    "sources": "Sources the customer's records come from",
    "n_sources": "Number of distinct sources",
    "email_marketable": "Email consent given, not unsubscribed and an email known",
    "sms_marketable": "SMS consent given and a phone known",
    "is_review_flagged": "The customer's cluster is flagged for manual review",
    "flagged_at": "When the guard flagged the cluster",
    "reason": "Why the cluster was split or flagged",
    "needs_review": "A person should look at it",
    "original_cluster_size": "Records in the cluster before the guard split it",
    "refused_links": "Links the guard refused in the cluster",
    "refused_link_types": "Link types of the refused links",
    "id_type": "email, phone or loyalty_id",
    "value": "The normalized identifier",
    "n_records_sharing": "Records carrying this identifier",
    "is_hub": "Too many records share it to link on",
    "is_ambiguous": "Shared by records of conflicting people: not linked on",
    "created_at": "When the model was trained or loaded",
    "config_version": "Version of config/identity.yaml",
    "trained": "Parameters estimated on this data (false: defaults or a previous model)",
    "n_input_records": "Records the model was trained on",
    "settings_json": "Splink settings with the trained parameters",
    "notes": "Training notes (EM passes, warnings)",
    "comparison": "Comparison (column) of the model",
    "comparison_sort_order": "Order of the comparison in the model",
    "comparison_vector_value": "Level index within the comparison",
    "level": "Comparison level label",
    "sql_condition": "SQL condition of the level",
    "is_null_level": "Level for missing values",
    "m_probability": "P(level | match)",
    "u_probability": "P(level | non-match)",
    "bayes_factor": "m / u",
    "has_tf_adjustments": "Term-frequency adjustment applied",
    "tf_adjustment_column": "Column whose term frequencies adjust the weight",
}
EVERY_RECORD_CHECK = "every_record_has_one_key"
CLUSTER_CAP_CHECK = "no_cluster_above_cap"
STABILITY_CHECK = "keys_stable_unless_logged"
PERSON_SOURCES = [c.name for c in CONTRACTS.values() if c.person_ref]


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey([SCHEMA, name])


def _spec(name: str) -> dg.AssetSpec:
    columns = identity.OUTPUT_TABLES[name]
    return dg.AssetSpec(
        _key(name),
        description=DESCRIPTIONS[name],
        owners=[OWNER],
        kinds={"duckdb", "splink"},
        code_version=version_of(IDENTITY_LOGIC_VERSION, IDENTITY_CONFIG),
        metadata=table_metadata(
            f"{SCHEMA}.{name}",
            column_schema({c: (t, _COLUMN_DOCS.get(c, "")) for c, t in columns.items()}, pii=_PII_COLUMNS),
        ),
        tags={"layer": "identity"},
        deps=[dg.AssetKey(["raw", source]) for source in PERSON_SOURCES],
    )


_PII_COLUMNS = {
    "first_name",
    "last_name",
    "email",
    "email_local",
    "phone",
    "address",
    "postcode",
    "birth_date",
    "display_first_name",
    "display_last_name",
    "display_address",
    "value",
}


@dg.multi_asset(
    name="resolve_identities",
    group_name="identity",
    pool="duckdb",
    specs=[_spec(name) for name in DESCRIPTIONS],
    check_specs=[
        dg.AssetCheckSpec(
            EVERY_RECORD_CHECK,
            asset=_key("customer_key_map"),
            blocking=True,
            description="Every source record maps to exactly one customer_key.",
        ),
        dg.AssetCheckSpec(
            CLUSTER_CAP_CHECK,
            asset=_key("customer_key_map"),
            blocking=True,
            description="No customer holds more records than the configured cluster size cap.",
        ),
        dg.AssetCheckSpec(
            STABILITY_CHECK,
            asset=_key("customer_key_map"),
            blocking=True,
            description="A record that existed before keeps its key unless this run logged a merge or split.",
        ),
    ],
)
def resolve_identities(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.get_connection() as conn:
        key_map = f"{SCHEMA}.customer_key_map"
        previous = (
            conn.sql(f"SELECT source, source_id, customer_key FROM {key_map}").to_arrow_table()
            if warehouse.table_exists(conn, key_map)
            else None
        )
        result = identity.resolve_identities(conn, IDENTITY_CONFIG, now=now)
        counts = {name: warehouse.row_count(conn, f"{result.schema}.{name}") for name in result.tables}
        unexplained = _unexplained_key_changes(conn, previous, key_map, now) if previous is not None else 0
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float) and v is not None}
    context.log.info(f"identity: {counts['records']} records -> {counts['customers']} customers")
    for name in DESCRIPTIONS:
        metadata = {"dagster/row_count": counts[name]}
        if name == "customer_key_map":
            metadata |= {k: v for k, v in metrics.items() if not k.startswith("seconds_")}
        if name == "model" and result.model_version:
            metadata["model_version"] = result.model_version
        yield dg.MaterializeResult(asset_key=_key(name), metadata=metadata)
    for check_name, outcome in (
        (EVERY_RECORD_CHECK, result.checks["every_record_has_one_key"]),
        (CLUSTER_CAP_CHECK, result.checks["cluster_size_cap"]),
    ):
        yield dg.AssetCheckResult(
            asset_key=_key("customer_key_map"),
            check_name=check_name,
            passed=outcome.passed,
            metadata={k: v for k, v in outcome.counts.items() if isinstance(v, int | float | str)},
        )
    yield dg.AssetCheckResult(
        asset_key=_key("customer_key_map"),
        check_name=STABILITY_CHECK,
        passed=unexplained == 0,
        metadata={"records_changed_without_logged_merge_or_split": unexplained},
    )


def _unexplained_key_changes(conn, previous, key_map: str, now: datetime) -> int:
    """Records whose key changed although this run logged no merge or split for their new key."""
    conn.register("_previous_key_map", previous)
    try:
        return conn.execute(
            f"""
            SELECT count(*)
            FROM _previous_key_map p
            JOIN {key_map} c USING (source, source_id)
            WHERE p.customer_key <> c.customer_key
              AND c.customer_key NOT IN (
                  SELECT customer_key FROM {SCHEMA}.changelog
                  WHERE changed_at = ? AND change_type IN ('merge', 'split', 'new')
              )
            """,
            [now],
        ).fetchall()[0][0]
    finally:
        conn.unregister("_previous_key_map")


identity_assets = [resolve_identities]
