"""Customer feature snapshots, point-in-time correct, computed in DuckDB.

A snapshot is taken *as of 00:00 on snapshot_date*: only raw rows whose event time is
strictly before that instant are read, so a snapshot computed today for last March
equals the one computed last March (given the same raw rows and key map), and models
trained on history never see their own future.

Consent is derived the same way, from CRM contact versions and unsubscribe events before
the snapshot, not read from the golden record `identity.customers`: its consent is today's,
and copying it into last year's snapshots would leak later opt-outs into history. Whoever
sends marketing must check current consent in `identity.customers`, not in a snapshot.

Every column is declared once in the registry (`_registry.feature_registry`); the query's
output is cast to it.
"""

from datetime import date, datetime

import duckdb
import pyarrow as pa

from segmentation_platform.contracts import (
    CRM_CONTACTS,
    EMAIL_EVENTS,
    POS_TRANSACTIONS,
    SUPPORT_TICKETS,
    WEB_ORDERS,
    SourceContract,
)
from segmentation_platform.core import warehouse
from segmentation_platform.core.features._config import FeatureConfig, load_feature_config
from segmentation_platform.core.features._registry import feature_registry
from segmentation_platform.core.ingestion import METADATA_COLUMNS
from segmentation_platform.core.warehouse import tables

# Raw sources the features read (marketing_spend has no people in it).
FEATURE_SOURCES: tuple[SourceContract, ...] = (
    WEB_ORDERS,
    POS_TRANSACTIONS,
    CRM_CONTACTS,
    EMAIL_EVENTS,
    SUPPORT_TICKETS,
)
LIFECYCLE_STAGES = ("prospect", "new", "active", "at_risk", "dormant", "lost")


def snapshot_cutoff(snapshot_date: date) -> datetime:
    """The instant a snapshot is taken: 00:00 on its date. Rows at or after it are never read."""
    return datetime.combine(snapshot_date, datetime.min.time())


def _source_rows(conn: duckdb.DuckDBPyConnection, contract: SourceContract) -> str:
    """SQL of `raw.<source>` rows before the cutoff, one per row key (the latest load wins).

    Optional columns the table lacks read as NULL and a source never loaded reads as
    empty, so a source delivered with required columns only still yields features.
    The person_ref is evaluated here, from the contract, as `_person_ref`. Only keys
    loaded more than once go through the window (4x faster when, as usual, none are).
    """
    table = tables.raw_table(contract.name)
    wanted = {c.name: c.duckdb_type for c in contract.columns} | METADATA_COLUMNS
    present = set(warehouse.table_columns(conn, table))
    if present:
        missing_required = [c for c in contract.required_columns if c not in present]
        if missing_required:
            raise ValueError(f"{table} lacks required column(s) {', '.join(missing_required)}")
        source = warehouse.table_ref(table)
    else:
        source = "(SELECT 1 WHERE false)"
    select = ", ".join(
        warehouse.quote(name) if name in present else f"CAST(NULL AS {sql_type}) AS {warehouse.quote(name)}"
        for name, sql_type in wanted.items()
    )
    key = ", ".join(warehouse.quote(column) for column in contract.key)
    return f"""(
        WITH source_rows AS NOT MATERIALIZED (
            SELECT *, ({contract.person_ref}) AS _person_ref
            FROM (SELECT {select} FROM {source})
            WHERE {warehouse.quote(contract.event_time)} < $cutoff
        ),
        reloaded AS (SELECT {key} FROM source_rows GROUP BY ALL HAVING count(*) > 1)
        SELECT * FROM source_rows ANTI JOIN reloaded USING ({key})
        UNION ALL
        (
            SELECT * FROM source_rows SEMI JOIN reloaded USING ({key})
            QUALIFY row_number() OVER (
                PARTITION BY {key} ORDER BY _partition_date DESC, _loaded_at DESC, _source_file DESC, _line DESC
            ) = 1
        )
    )"""


def _require_key_map(conn: duckdb.DuckDBPyConnection) -> None:
    # Existence via table_columns (fetchall): with duckdb 2.0 a result read by fetchone() stays
    # open and makes the next register()/sql() on the connection fail.
    columns = set(warehouse.table_columns(conn, tables.CUSTOMER_KEY_MAP))
    if not columns:
        raise ValueError(f"{tables.CUSTOMER_KEY_MAP} does not exist: materialize identity resolution first")
    missing = {"source", "source_id", "customer_key"} - columns
    if missing:
        raise ValueError(f"{tables.CUSTOMER_KEY_MAP} lacks column(s) {', '.join(sorted(missing))}")
    repeated = conn.execute(
        f"SELECT source, count(*), min(source_id) FROM (SELECT source, source_id FROM {tables.CUSTOMER_KEY_MAP} "
        "GROUP BY ALL HAVING count(*) > 1) GROUP BY source ORDER BY source"
    ).fetchall()
    if repeated:
        detail = "; ".join(f"{source}: {count} (e.g. {example!r})" for source, count, example in repeated)
        raise ValueError(
            f"{tables.CUSTOMER_KEY_MAP} holds some source records more than once, which would count their rows "
            f"twice: {detail}"
        )


def _join_key(source: SourceContract) -> str:
    return f"JOIN key_map k ON k.source = '{source.name}' AND k.source_id = s._person_ref"


_ORDERS_SELECT = f"""
    SELECT k.customer_key, 'web' AS channel, s.order_id AS order_id, s.ordered_at AS purchased_at,
           s.amount, s.category, s.cost, s.discount, s.acquisition_channel
    FROM web s {_join_key(WEB_ORDERS)}
    UNION ALL
    SELECT k.customer_key, 'pos', s.receipt_id, s.purchased_at,
           s.amount, s.category, s.cost, s.discount, NULL
    FROM pos s {_join_key(POS_TRANSACTIONS)}
"""


def customer_orders_sql(conn: duckdb.DuckDBPyConnection) -> str:
    """Orders of identified customers before `$cutoff` (web and POS, one row per order key):
    customer_key, channel, order_id, purchased_at, amount, category, cost, discount,
    acquisition_channel. The one definition of "a customer's orders" that models share."""
    _require_key_map(conn)
    return f"""
WITH
key_map AS (SELECT source, source_id, customer_key FROM {tables.CUSTOMER_KEY_MAP}),
web AS {_source_rows(conn, WEB_ORDERS)},
pos AS {_source_rows(conn, POS_TRANSACTIONS)}
{_ORDERS_SELECT}"""


def customer_features_sql(conn: duckdb.DuckDBPyConnection, config: FeatureConfig) -> str:
    """The snapshot query; parameters `$cutoff` (TIMESTAMP) and `$snapshot` (DATE)."""
    stages = config.lifecycle
    rate_days = config.rate_window_days
    window_counts = ",\n".join(
        f"count(*) FILTER (WHERE event_type = '{kind}' AND occurred_at >= $cutoff - INTERVAL {days} DAY) "
        f"AS email_{kind}s_{days}d"
        for days in config.email_windows_days
        for kind in ("send", "open", "click")
    )
    email_count_columns = ",\n".join(
        f"coalesce(e.email_{kind}s_{days}d, 0) AS email_{kind}s_{days}d"
        for days in config.email_windows_days
        for kind in ("send", "open", "click")
    )
    registry = feature_registry(config)
    final = ",\n".join(
        f"CAST({warehouse.quote(f.name)} AS {f.sql_type}) AS {warehouse.quote(f.name)}" for f in registry
    )
    return f"""
WITH
key_map AS (SELECT source, source_id, customer_key FROM {tables.CUSTOMER_KEY_MAP}),
web AS {_source_rows(conn, WEB_ORDERS)},
pos AS {_source_rows(conn, POS_TRANSACTIONS)},
crm AS {_source_rows(conn, CRM_CONTACTS)},
emails AS {_source_rows(conn, EMAIL_EVENTS)},
tickets AS {_source_rows(conn, SUPPORT_TICKETS)},
orders AS MATERIALIZED ({_ORDERS_SELECT}),
order_stats AS (
    SELECT customer_key,
        count(*) AS frequency,
        count(DISTINCT CAST(purchased_at AS DATE)) - 1 AS repeat_frequency,
        sum(amount) AS monetary_total,
        avg(amount) AS monetary_avg,
        min(purchased_at) AS first_purchase_at,
        max(purchased_at) AS last_purchase_at,
        count(*) FILTER (WHERE channel = 'web') AS web_orders,
        count(*) FILTER (WHERE channel = 'pos') AS pos_orders,
        coalesce(sum(amount) FILTER (WHERE channel = 'web'), 0) AS web_revenue,
        sum(discount) AS discount_amount,
        sum(amount + discount) AS gross_of_discounted,
        count(discount) AS orders_with_discount_known,
        count(*) FILTER (WHERE discount > 0) AS discounted_orders,
        sum(amount - cost) AS contribution_margin,
        sum(amount) FILTER (WHERE cost IS NOT NULL) AS revenue_with_cost
    FROM orders
    GROUP BY customer_key
),
category_stats AS (
    SELECT customer_key,
        count(*) AS distinct_categories,
        greatest(log2(sum(n)) - sum(n * log2(n)) / sum(n), 0) AS category_entropy,
        arg_min(category, (-n, category)) AS top_category,
        max(n) / sum(n) AS top_category_share
    FROM (SELECT customer_key, category, count(*) AS n FROM orders WHERE category IS NOT NULL GROUP BY ALL)
    GROUP BY customer_key
),
email_stats AS (
    SELECT k.customer_key,
        {window_counts},
        count(*) FILTER (WHERE event_type = 'send' AND occurred_at >= $cutoff - INTERVAL {rate_days} DAY)
            AS rate_sends,
        count(*) FILTER (WHERE event_type = 'open' AND occurred_at >= $cutoff - INTERVAL {rate_days} DAY)
            AS rate_opens,
        count(*) FILTER (WHERE event_type = 'click' AND occurred_at >= $cutoff - INTERVAL {rate_days} DAY)
            AS rate_clicks,
        max(occurred_at) FILTER (WHERE event_type = 'unsubscribe') AS last_unsubscribe_at,
        min(occurred_at) AS first_at,
        max(occurred_at) AS last_at
    FROM emails s {_join_key(EMAIL_EVENTS)}
    GROUP BY k.customer_key
),
ticket_stats AS (
    SELECT k.customer_key,
        count(*) FILTER (WHERE created_at >= $cutoff - INTERVAL {config.support_window_days} DAY)
            AS recent_tickets,
        count(*) AS support_tickets_total,
        avg(satisfaction) AS support_satisfaction_mean,
        min(created_at) AS first_at,
        max(created_at) AS last_at
    FROM tickets s {_join_key(SUPPORT_TICKETS)}
    GROUP BY k.customer_key
),
crm_stats AS (
    SELECT k.customer_key,
        -- On a tie between two contact versions, the one withholding consent wins.
        arg_max(email_consent, (updated_at, NOT email_consent)) FILTER (WHERE email_consent IS NOT NULL)
            AS crm_email_consent,
        max(updated_at) FILTER (WHERE email_consent IS NOT NULL) AS crm_email_consent_at,
        arg_max(sms_consent, (updated_at, NOT sms_consent)) FILTER (WHERE sms_consent IS NOT NULL)
            AS sms_consent,
        min(updated_at) AS first_at,
        max(updated_at) AS last_at
    FROM crm s {_join_key(CRM_CONTACTS)}
    GROUP BY k.customer_key
),
acquisition AS (
    SELECT customer_key, arg_min(acquisition_channel, (seen_at, source_rank, record_id)) AS acquisition_channel
    FROM (
        SELECT customer_key, acquisition_channel, purchased_at AS seen_at, 1 AS source_rank, order_id AS record_id
        FROM orders WHERE acquisition_channel IS NOT NULL
        UNION ALL
        SELECT k.customer_key, s.acquisition_channel, s.updated_at, 0, s.contact_id
        FROM crm s {_join_key(CRM_CONTACTS)}
        WHERE s.acquisition_channel IS NOT NULL
    )
    GROUP BY customer_key
),
customers AS (
    SELECT customer_key FROM order_stats
    UNION SELECT customer_key FROM email_stats
    UNION SELECT customer_key FROM ticket_stats
    UNION SELECT customer_key FROM crm_stats
),
assembled AS (
    SELECT
        $snapshot AS snapshot_date,
        c.customer_key,
        o.first_purchase_at,
        o.last_purchase_at,
        date_diff('day', CAST(o.last_purchase_at AS DATE), $snapshot) AS recency_days,
        CASE
            WHEN o.frequency IS NULL THEN 'prospect'
            WHEN date_diff('day', CAST(o.first_purchase_at AS DATE), $snapshot) <= {stages.new_within_days}
                THEN 'new'
            WHEN recency_days <= {stages.active_within_days} THEN 'active'
            WHEN recency_days <= {stages.at_risk_within_days} THEN 'at_risk'
            WHEN recency_days <= {stages.dormant_within_days} THEN 'dormant'
            ELSE 'lost'
        END AS lifecycle_stage,
        coalesce(o.frequency, 0) AS frequency,
        greatest(coalesce(o.repeat_frequency, 0), 0) AS repeat_frequency,
        coalesce(o.monetary_total, 0) AS monetary_total,
        o.monetary_avg,
        CASE WHEN o.frequency > 1 THEN
            epoch(o.last_purchase_at - o.first_purchase_at) / 86400.0 / (o.frequency - 1)
        END AS mean_interpurchase_days,
        coalesce(o.web_orders, 0) AS web_orders,
        coalesce(o.pos_orders, 0) AS pos_orders,
        o.web_revenue / nullif(o.monetary_total, 0) AS web_revenue_share,
        CASE
            WHEN o.web_orders > 0 AND o.pos_orders > 0 THEN 'omnichannel'
            WHEN o.web_orders > 0 THEN 'web'
            WHEN o.pos_orders > 0 THEN 'pos'
        END AS purchase_channels,
        coalesce(g.distinct_categories, 0) AS distinct_categories,
        g.category_entropy,
        g.top_category,
        g.top_category_share,
        o.discount_amount / nullif(o.gross_of_discounted, 0) AS discount_share,
        o.discounted_orders / nullif(o.orders_with_discount_known, 0) AS discounted_order_share,
        o.contribution_margin,
        o.contribution_margin / nullif(o.revenue_with_cost, 0) AS margin_rate,
        {email_count_columns},
        CASE WHEN e.rate_sends > 0 THEN least(e.rate_opens / e.rate_sends, 1) END
            AS email_open_rate_{rate_days}d,
        CASE WHEN e.rate_sends > 0 THEN least(e.rate_clicks / e.rate_sends, 1) END
            AS email_click_rate_{rate_days}d,
        coalesce(t.recent_tickets, 0) AS support_tickets_{config.support_window_days}d,
        coalesce(t.support_tickets_total, 0) AS support_tickets_total,
        t.support_satisfaction_mean,
        a.acquisition_channel,
        CASE
            WHEN e.last_unsubscribe_at IS NOT NULL
                 AND (r.crm_email_consent_at IS NULL OR e.last_unsubscribe_at >= r.crm_email_consent_at)
                THEN false
            ELSE r.crm_email_consent
        END AS email_consent,
        r.sms_consent,
        coalesce(e.last_unsubscribe_at IS NOT NULL, false) AS unsubscribed,
        least(o.first_purchase_at, e.first_at, t.first_at, r.first_at) AS first_seen_at,
        greatest(o.last_purchase_at, e.last_at, t.last_at, r.last_at) AS last_seen_at,
        date_diff('day', CAST(first_seen_at AS DATE), $snapshot) AS tenure_days
    FROM customers c
    LEFT JOIN order_stats o USING (customer_key)
    LEFT JOIN category_stats g USING (customer_key)
    LEFT JOIN email_stats e USING (customer_key)
    LEFT JOIN ticket_stats t USING (customer_key)
    LEFT JOIN crm_stats r USING (customer_key)
    LEFT JOIN acquisition a USING (customer_key)
)
SELECT {final}
FROM assembled
ORDER BY customer_key
"""


def compute_customer_features(
    conn: duckdb.DuckDBPyConnection, snapshot_date: date, config: FeatureConfig | None = None
) -> pa.Table:
    """Features of every known customer as of 00:00 on `snapshot_date`, one row each.

    Reads `raw.*` and `identity.customer_key_map` through `conn`; writes nothing.
    """
    config = config or load_feature_config()
    _require_key_map(conn)
    sql = customer_features_sql(conn, config)
    params = {"cutoff": snapshot_cutoff(snapshot_date), "snapshot": snapshot_date}
    return conn.sql(sql, params=params).to_arrow_table()


def order_coverage(conn: duckdb.DuckDBPyConnection, snapshot_date: date) -> dict[str, int]:
    """Orders before the snapshot by fate: tied to a customer, anonymous, or unknown to the key map.

    Unmapped orders are an identity gap (rows loaded after identity last ran), worth a look.
    """
    _require_key_map(conn)
    sql = f"""
    WITH key_map AS (SELECT source, source_id, customer_key FROM {tables.CUSTOMER_KEY_MAP}),
    web AS {_source_rows(conn, WEB_ORDERS)},
    pos AS {_source_rows(conn, POS_TRANSACTIONS)},
    orders AS (
        SELECT 'web_orders' AS source, _person_ref FROM web
        UNION ALL SELECT 'pos_transactions', _person_ref FROM pos
    )
    SELECT
        count(*) AS orders,
        count(k.customer_key) AS customer_orders,
        count(*) FILTER (WHERE o._person_ref IS NULL) AS anonymous_orders,
        count(*) FILTER (WHERE o._person_ref IS NOT NULL AND k.customer_key IS NULL) AS unmapped_orders
    FROM orders o LEFT JOIN key_map k ON k.source = o.source AND k.source_id = o._person_ref
    """
    relation = conn.sql(sql, params={"cutoff": snapshot_cutoff(snapshot_date)})
    (row,) = relation.fetchall()
    return dict(zip(relation.columns, row, strict=True))
