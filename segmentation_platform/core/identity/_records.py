"""Customer records: one normalized row per person-level source record.

A "record" is what a source knows about one person: a web account, a loyalty card or an
identified till receipt, a CRM contact, a support ticket, an email subscriber. Its id is
the contract's `person_ref` expression, so the key map lines up with what every other
stage derives from the raw tables. Values are the most recent non-empty ones (ties broken
by the row key, so re-runs pick the same value); identifiers and cross-references are kept
over the record's whole history, which is what connects a person whose email changed.

Normalization (the rules of `_normalize`) runs in SQL where DuckDB can do it (emails,
postcodes, dates) and in Python over *distinct* raw strings only where a library is needed
(phonenumbers for E.164, Unicode folding for names and addresses), so its cost follows the
number of different values, not of rows.
"""

import datetime as dt
import functools
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core.identity._config import IdentityConfig
from segmentation_platform.core.identity._normalize import (
    email_local_sql,
    email_sql,
    first_name_forms,
    normalize_address,
    normalize_name,
    normalize_phones,
    postcode_sql,
)


@dataclass(frozen=True)
class _SourceSpec:
    """How one contract's columns feed the uniform record shape."""

    source: str
    event_time: str
    # record field -> raw column
    fields: dict[str, str]
    # cross-reference field -> raw column (target source implied by the field)
    xrefs: dict[str, str]


SOURCE_SPECS = (
    _SourceSpec(
        "web_orders",
        "ordered_at",
        {c: c for c in ("first_name", "last_name", "email", "phone", "address", "postcode")},
        {"xref_crm_contact_id": "crm_contact_id"},
    ),
    _SourceSpec(
        "pos_transactions",
        "purchased_at",
        {"email": "email", "phone": "phone", "loyalty_id": "loyalty_id"},
        {},
    ),
    _SourceSpec(
        "crm_contacts",
        "updated_at",
        {
            **{c: c for c in ("first_name", "last_name", "email", "phone", "address", "postcode")},
            "birth_date": "birth_date",
            "loyalty_id": "loyalty_id",
            "email_consent": "email_consent",
            "sms_consent": "sms_consent",
        },
        {"xref_web_account_id": "web_account_id"},
    ),
    _SourceSpec("support_tickets", "created_at", {"email": "email"}, {"xref_crm_contact_id": "contact_id"}),
    _SourceSpec("email_events", "occurred_at", {"email": "email", "event_type": "event_type"}, {}),
)

# Uniform column set of the per-row union, with SQL types for the NULL fillers.
_ROW_FIELDS = {
    "first_name": "VARCHAR",
    "last_name": "VARCHAR",
    "email": "VARCHAR",
    "phone": "VARCHAR",
    "address": "VARCHAR",
    "postcode": "VARCHAR",
    "birth_date": "DATE",
    "loyalty_id": "VARCHAR",
    "email_consent": "BOOLEAN",
    "sms_consent": "BOOLEAN",
    "event_type": "VARCHAR",
    "xref_crm_contact_id": "VARCHAR",
    "xref_web_account_id": "VARCHAR",
}

# Cross-reference field -> (link type, source of the record it points at).
XREF_TARGETS = {
    "xref_crm_contact_id": "crm_contacts",
    "xref_web_account_id": "web_orders",
}


def existing_sources(conn: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, set[str]]:
    """Raw tables present in the warehouse and their columns (a missing source is skipped)."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = ? AND table_schema = 'raw'",
        [catalog],
    ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return {spec.source: found[spec.source] for spec in SOURCE_SPECS if spec.source in found}


def _person_rows_sql(catalog: str, sources: dict[str, set[str]]) -> str:
    parts = []
    for spec in SOURCE_SPECS:
        if spec.source not in sources:
            continue
        contract = CONTRACTS[spec.source]
        columns = sources[spec.source]
        missing_required = [c for c in contract.required_columns if c not in columns]
        if missing_required:
            raise ValueError(
                f"raw.{spec.source} lacks required contract columns {missing_required}; "
                "re-run ingestion for this source"
            )
        available = {**spec.fields, **spec.xrefs}
        selects = []
        for field, sql_type in _ROW_FIELDS.items():
            column = available.get(field)
            if column is not None and column in columns:
                expr = f'"{column}"' if sql_type != "VARCHAR" else f"nullif(trim(\"{column}\"), '')"
            else:
                expr = f"NULL::{sql_type}"
            selects.append(f"{expr} AS {field}")
        row_key = " || '|' || ".join(f"coalesce(CAST(\"{k}\" AS VARCHAR), '')" for k in contract.key)
        grouped = [f for f in _ROW_FIELDS if f != "event_type"]
        # Rows repeating the same details (every order of an account, every event of a
        # subscriber) collapse here, before the per-record aggregation: 8M email events
        # become a few hundred thousand (subscriber, address) tuples.
        parts.append(
            f"""
            SELECT source, source_id, max((event_at, row_key)) AS last_key, min(event_at) AS first_at,
                   max(event_at) AS last_at, count(*) AS n_rows,
                   coalesce(bool_or(event_type = 'unsubscribe'), false) AS unsubscribed, {", ".join(grouped)}
            FROM (
                SELECT '{spec.source}' AS source, CAST({contract.person_ref} AS VARCHAR) AS source_id,
                       "{spec.event_time}"::TIMESTAMP AS event_at, {row_key} AS row_key, {", ".join(selects)}
                FROM "{catalog}".raw."{spec.source}"
            )
            WHERE source_id IS NOT NULL
            GROUP BY ALL
            """
        )
    if not parts:
        raise ValueError(
            "no raw source tables found (expected raw.web_orders, raw.pos_transactions, "
            "raw.crm_contacts, raw.support_tickets or raw.email_events)"
        )
    return "\nUNION ALL\n".join(parts)


def build_records(
    conn: duckdb.DuckDBPyConnection,
    catalog: str,
    scratch: str,
    config: IdentityConfig,
    today: dt.date,
) -> dict[str, int]:
    """Create `{scratch}.records`, `.identifiers` and `.xref_links`; returns counts.

    `identifiers` holds (record_id, id_type, value) for every normalized email, phone and
    loyalty id the record carried (its whole history when configured); `xref_links`
    holds the source-provided links between records.
    """
    sources = existing_sources(conn, catalog)
    rows_sql = _person_rows_sql(catalog, sources)
    by_time = "last_key"
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {scratch}.record_values AS
        SELECT
            source,
            source_id,
            min(first_at) AS first_seen_at,
            max(last_at) AS last_seen_at,
            sum(n_rows) AS n_source_rows,
            arg_max(first_name, {by_time}) AS first_name_raw,
            arg_max(last_name, {by_time}) AS last_name_raw,
            arg_max(email, {by_time}) AS email_raw,
            arg_max(phone, {by_time}) AS phone_raw,
            arg_max(address, {by_time}) AS address_raw,
            arg_max(postcode, {by_time}) AS postcode_raw,
            arg_max(birth_date, {by_time}) AS birth_date_raw,
            arg_max(loyalty_id, {by_time}) AS loyalty_id_raw,
            arg_max(email_consent, {by_time}) AS email_consent,
            arg_max(sms_consent, {by_time}) AS sms_consent,
            max(last_at) FILTER (WHERE email_consent IS NOT NULL OR sms_consent IS NOT NULL)
                AS consent_updated_at,
            bool_or(unsubscribed) AS email_unsubscribed,
            array_agg(DISTINCT email) FILTER (WHERE email IS NOT NULL) AS emails_seen,
            array_agg(DISTINCT phone) FILTER (WHERE phone IS NOT NULL) AS phones_seen,
            array_agg(DISTINCT loyalty_id) FILTER (WHERE loyalty_id IS NOT NULL) AS loyalty_ids_seen,
            array_agg(DISTINCT xref_crm_contact_id) FILTER (WHERE xref_crm_contact_id IS NOT NULL)
                AS xref_crm_contact_ids,
            array_agg(DISTINCT xref_web_account_id) FILTER (WHERE xref_web_account_id IS NOT NULL)
                AS xref_web_account_ids
        FROM ({rows_sql}) AS person_tuples
        GROUP BY source, source_id
        """
    )
    historical = config.deterministic.use_historical_values
    phones_expr = "phones_seen" if historical else "[phone_raw]"
    # Formatting variants ("(212) 555-0100", "212.555.0100") share one key, so phonenumbers
    # runs once per number rather than once per way of writing it.
    phone_key = (
        "CASE WHEN regexp_matches(raw, '[A-Za-z]') THEN raw ELSE regexp_replace(raw, '[^0-9+]', '', 'g') END"
    )
    conn.execute(
        f"CREATE OR REPLACE TABLE {scratch}.phone_raw AS "
        f"SELECT raw, {phone_key} AS phone_key "
        f"FROM (SELECT DISTINCT unnest({phones_expr}) AS raw FROM {scratch}.record_values) WHERE raw IS NOT NULL"
    )
    _create_value_map(
        conn,
        scratch,
        "phone_key_map",
        f"SELECT DISTINCT phone_key AS raw FROM {scratch}.phone_raw",
        functools.partial(
            normalize_phones,
            default_region=config.normalization.default_phone_region,
            validation=config.normalization.phone_validation,
        ),
        vectorized=True,
    )
    conn.execute(
        f"CREATE OR REPLACE TABLE {scratch}.phone_map AS "
        f"SELECT p.raw, k.normalized FROM {scratch}.phone_raw p JOIN {scratch}.phone_key_map k ON k.raw = p.phone_key"
    )
    nicknames = config.normalization.nicknames
    _create_value_map(
        conn,
        scratch,
        "name_map",
        f"SELECT first_name_raw AS raw FROM {scratch}.record_values "
        f"UNION SELECT last_name_raw FROM {scratch}.record_values",
        normalize_name,
    )
    abbreviations = config.normalization.address_abbreviations
    _create_value_map(
        conn,
        scratch,
        "address_map",
        f"SELECT DISTINCT address_raw AS raw FROM {scratch}.record_values",
        lambda v: normalize_address(v, abbreviations),
    )
    first_names = [
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT m.normalized FROM {scratch}.record_values v "
            f"JOIN {scratch}.name_map m ON m.raw = v.first_name_raw WHERE m.normalized IS NOT NULL"
        ).fetchall()
    ]
    forms_table = pa.table(
        {"name": first_names, "forms": [first_name_forms(n, nicknames) for n in first_names]},
        schema=pa.schema([("name", pa.string()), ("forms", pa.list_(pa.string()))]),
    )
    arrow_to_table(conn, forms_table, f"{scratch}.first_name_forms")

    min_birth = config.normalization.min_birth_date.isoformat()
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {scratch}.records AS
        WITH normalized AS (
            SELECT
                v.*,
                fn.normalized AS first_name,
                ln.normalized AS last_name,
                {email_sql("v.email_raw")} AS email,
                ph.normalized AS phone,
                ad.normalized AS address,
                {postcode_sql("v.postcode_raw")} AS postcode,
                CASE WHEN v.birth_date_raw BETWEEN DATE '{min_birth}' AND DATE '{today.isoformat()}'
                     THEN v.birth_date_raw END AS birth_date
            FROM {scratch}.record_values v
            LEFT JOIN {scratch}.name_map fn ON fn.raw = v.first_name_raw
            LEFT JOIN {scratch}.name_map ln ON ln.raw = v.last_name_raw
            LEFT JOIN {scratch}.phone_map ph ON ph.raw = v.phone_raw
            LEFT JOIN {scratch}.address_map ad ON ad.raw = v.address_raw
        )
        SELECT
            row_number() OVER (ORDER BY n.source, n.source_id) AS record_id,
            n.source,
            n.source_id,
            n.first_name,
            nf.forms AS first_name_forms,
            n.last_name,
            n.email,
            {email_local_sql("n.email")} AS email_local,
            n.phone,
            n.address,
            n.postcode,
            n.birth_date,
            n.loyalty_id_raw AS loyalty_id,
            n.first_name_raw AS display_first_name,
            n.last_name_raw AS display_last_name,
            n.address_raw AS display_address,
            n.first_seen_at,
            n.last_seen_at,
            n.n_source_rows,
            n.email_consent,
            n.sms_consent,
            n.consent_updated_at,
            n.email_unsubscribed
        FROM normalized n
        LEFT JOIN {scratch}.first_name_forms nf ON nf.name = n.first_name
        ORDER BY record_id
        """
    )
    _build_identifiers(conn, scratch, config)
    _build_xref_links(conn, scratch)
    counts = dict(
        conn.execute(
            f"SELECT source, count(*) FROM {scratch}.records GROUP BY source ORDER BY source"
        ).fetchall()
    )
    conn.execute(f"DROP TABLE {scratch}.record_values")
    return counts


def _build_identifiers(conn: duckdb.DuckDBPyConnection, scratch: str, config: IdentityConfig) -> None:
    historical = config.deterministic.use_historical_values
    wanted = set(config.deterministic.identifiers)
    parts = []
    if "email" in wanted:
        emails = "unnest(v.emails_seen)" if historical else "v.email_raw"
        parts.append(
            f"SELECT r.record_id, 'email' AS id_type, {email_sql('e.raw')} AS value "
            f"FROM (SELECT source, source_id, {emails} AS raw FROM {scratch}.record_values v) e "
            f"JOIN {scratch}.records r USING (source, source_id)"
        )
    if "phone" in wanted:
        phones = "unnest(v.phones_seen)" if historical else "v.phone_raw"
        parts.append(
            f"SELECT r.record_id, 'phone', m.normalized "
            f"FROM (SELECT source, source_id, {phones} AS raw FROM {scratch}.record_values v) p "
            f"JOIN {scratch}.phone_map m USING (raw) "
            f"JOIN {scratch}.records r USING (source, source_id)"
        )
    if "loyalty_id" in wanted:
        loyalty = "unnest(v.loyalty_ids_seen)" if historical else "v.loyalty_id_raw"
        parts.append(
            f"SELECT r.record_id, 'loyalty_id', l.raw "
            f"FROM (SELECT source, source_id, {loyalty} AS raw FROM {scratch}.record_values v) l "
            f"JOIN {scratch}.records r USING (source, source_id)"
        )
    if not parts:
        conn.execute(
            f"CREATE OR REPLACE TABLE {scratch}.identifiers "
            "(record_id BIGINT, id_type VARCHAR, value VARCHAR)"
        )
        return
    conn.execute(
        f"CREATE OR REPLACE TABLE {scratch}.identifiers AS "
        f"SELECT DISTINCT * FROM ({' UNION ALL '.join(parts)}) WHERE value IS NOT NULL"
    )


def _build_xref_links(conn: duckdb.DuckDBPyConnection, scratch: str) -> None:
    """Links the sources state themselves (order -> CRM contact, contact -> web account...)."""
    parts = []
    for field, target in XREF_TARGETS.items():
        # Named after the raw column that states the link: xref:support_tickets.contact_id.
        names = " ".join(
            f"WHEN '{spec.source}' THEN '{spec.xrefs[field]}'" for spec in SOURCE_SPECS if field in spec.xrefs
        )
        parts.append(
            f"SELECT r.record_id AS from_id, t.record_id AS to_id, "
            f"'xref:' || r.source || '.' || CASE r.source {names} END AS link_type "
            f"FROM (SELECT source, source_id, unnest({field}s) AS target_id "
            f"      FROM {scratch}.record_values) x "
            f"JOIN {scratch}.records r ON r.source = x.source AND r.source_id = x.source_id "
            f"JOIN {scratch}.records t ON t.source = '{target}' AND t.source_id = x.target_id"
        )
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {scratch}.xref_links AS
        SELECT DISTINCT least(from_id, to_id) AS record_id_l, greatest(from_id, to_id) AS record_id_r, link_type
        FROM ({" UNION ALL ".join(parts)})
        WHERE from_id <> to_id
        """
    )


def _create_value_map(
    conn: duckdb.DuckDBPyConnection, scratch: str, name: str, distinct_sql: str, fn, vectorized: bool = False
) -> None:
    """Apply a Python normalizer once per distinct raw value, as a (raw, normalized) table."""
    raw_values = conn.execute(f"SELECT raw FROM ({distinct_sql}) WHERE raw IS NOT NULL").fetchnumpy()["raw"]
    raw_list = raw_values.tolist()
    normalized = fn(raw_list) if vectorized else [fn(v) for v in raw_list]
    table = pa.table(
        {"raw": raw_list, "normalized": normalized},
        schema=pa.schema([("raw", pa.string()), ("normalized", pa.string())]),
    )
    arrow_to_table(conn, table, f"{scratch}.{name}")


def arrow_to_table(conn: duckdb.DuckDBPyConnection, table: pa.Table, target: str) -> None:
    view = "_identity_arrow_input"
    conn.register(view, table)
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {view}")
    finally:
        conn.unregister(view)
