"""Golden customer record: one row per customer key, by configured survivorship rules.

Names and birth date come from the most trusted source that has them (the CRM is where
people correct them), contact points from whatever was seen most recently (people move
and change email). Consent comes from the most recent CRM version; any unsubscribe event
wins over it for email, so activation can never mail someone who opted out.
"""

import duckdb

from segmentation_platform.core.identity._config import IdentityConfig

# Golden field -> (value shown, column that decides whether the record has it).
_FIELD_VALUES = {
    "first_name": ("trim(r.display_first_name)", "r.first_name"),
    "last_name": ("trim(r.display_last_name)", "r.last_name"),
    "birth_date": ("r.birth_date", "r.birth_date"),
    "email": ("r.email", "r.email"),
    "phone": ("r.phone", "r.phone"),
    "address": ("trim(r.display_address)", "r.address"),
    "postcode": ("r.postcode", "r.postcode"),
}


def _survivor_sql(field: str, config: IdentityConfig) -> str:
    value, present = _FIELD_VALUES[field]
    trusted = config.survivorship.trusted_sources.get(field)
    if trusted:
        ranks = " ".join(f"WHEN '{source}' THEN {i}" for i, source in enumerate(trusted))
        order = f"CASE r.source {ranks} ELSE {len(trusted)} END, r.last_seen_at DESC, r.record_id"
    else:
        order = "r.last_seen_at DESC, r.record_id"
    return f"first({value} ORDER BY {order}) FILTER (WHERE {present} IS NOT NULL) AS {field}"


def build_customers(conn: duckdb.DuckDBPyConnection, scratch: str, config: IdentityConfig) -> int:
    """Create `{scratch}.customers` from records, key map and review flags."""
    s = scratch
    survivors = ",\n            ".join(_survivor_sql(f, config) for f in _FIELD_VALUES)
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {s}.customers AS
        WITH flagged AS (
            SELECT DISTINCT k.customer_key
            FROM {s}.guard_flags f JOIN {s}.cluster_keys k USING (cluster_id)
            WHERE f.needs_review
        ),
        golden AS (
            SELECT
                m.customer_key,
                {survivors},
                min(r.first_seen_at) AS first_seen_at,
                max(r.last_seen_at) AS last_seen_at,
                string_agg(DISTINCT r.source, ',' ORDER BY r.source) AS sources,
                count(DISTINCT r.source) AS n_sources,
                count(*) AS n_records,
                first(r.email_consent ORDER BY r.consent_updated_at DESC, r.record_id)
                    FILTER (WHERE r.source = 'crm_contacts' AND r.email_consent IS NOT NULL) AS email_consent,
                first(r.sms_consent ORDER BY r.consent_updated_at DESC, r.record_id)
                    FILTER (WHERE r.source = 'crm_contacts' AND r.sms_consent IS NOT NULL) AS sms_consent,
                max(r.consent_updated_at) FILTER (WHERE r.source = 'crm_contacts') AS consent_updated_at,
                bool_or(r.email_unsubscribed) AS email_unsubscribed
            FROM {s}.records r
            JOIN {s}.key_map m USING (record_id)
            GROUP BY m.customer_key
        )
        SELECT
            g.customer_key, g.first_name, g.last_name, g.birth_date, g.email, g.phone, g.address, g.postcode,
            g.first_seen_at, g.last_seen_at, g.sources, g.n_sources, g.n_records,
            g.email_consent, g.sms_consent, g.consent_updated_at, g.email_unsubscribed,
            coalesce(g.email_consent, false) AND NOT g.email_unsubscribed AND g.email IS NOT NULL
                AS email_marketable,
            coalesce(g.sms_consent, false) AND g.phone IS NOT NULL AS sms_marketable,
            f.customer_key IS NOT NULL AS is_review_flagged
        FROM golden g
        LEFT JOIN flagged f USING (customer_key)
        ORDER BY g.customer_key
        """
    )
    return conn.execute(f"SELECT count(*) FROM {s}.customers").fetchall()[0][0]
