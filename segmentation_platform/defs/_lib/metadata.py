"""Metadata every asset carries, built one way."""

import hashlib
from datetime import date

import dagster as dg
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.warehouse import TableSchema

OWNER = "team:data-platform"


def dagster_schema(schema: TableSchema) -> dg.TableSchema:
    """The Dagster column schema of a core `TableSchema` (PII columns tagged `pii`)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name, type=c.sql_type, description=c.description, tags={"pii": ""} if c.pii else {}
            )
            for c in schema.columns
        ]
    )


def schema_metadata(schema: TableSchema) -> dict:
    """Definition metadata of a table asset: its table name and column schema, from core."""
    return {
        "dagster/table_name": f"warehouse.{schema.table}",
        "dagster/column_schema": dagster_schema(schema),
    }


def version_of(*parts: object) -> str:
    """A code_version that changes whenever any of its inputs (logic version, contract, config) does."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


# Derived columns -> the upstream (asset, column) pairs they are computed from. Kept in one
# table because lineage crosses stages; tests/defs/test_governance.py checks every entry
# against the assets' column schemas and dependencies, so a renamed column fails there.
_ORDERS_AT = [("raw/web_orders", "ordered_at"), ("raw/pos_transactions", "purchased_at")]
_ORDERS_AMOUNT = [("raw/web_orders", "amount"), ("raw/pos_transactions", "amount")]
_ORDER_IDS = [("raw/web_orders", "order_id"), ("raw/pos_transactions", "receipt_id")]
_KEY = [("identity/customer_key_map", "customer_key")]
COLUMN_LINEAGE: dict[str, dict[str, list[tuple[str, str]]]] = {
    "identity/customers": {
        "email": [
            ("raw/crm_contacts", "email"),
            ("raw/web_orders", "email"),
            ("raw/pos_transactions", "email"),
        ],
        "phone": [
            ("raw/crm_contacts", "phone"),
            ("raw/web_orders", "phone"),
            ("raw/pos_transactions", "phone"),
        ],
        "email_consent": [("raw/crm_contacts", "email_consent")],
        "sms_consent": [("raw/crm_contacts", "sms_consent")],
        "email_unsubscribed": [("raw/email_events", "event_type")],
    },
    "features/customer_features": {
        "customer_key": _KEY,
        "first_purchase_at": _ORDERS_AT,
        "last_purchase_at": _ORDERS_AT,
        "recency_days": _ORDERS_AT,
        "frequency": _ORDER_IDS,
        "monetary_total": _ORDERS_AMOUNT,
        "monetary_avg": _ORDERS_AMOUNT,
        "web_orders": [("raw/web_orders", "order_id")],
        "pos_orders": [("raw/pos_transactions", "receipt_id")],
        "lifecycle_stage": _ORDERS_AT,
        "email_opens_90d": [("raw/email_events", "event_type"), ("raw/email_events", "occurred_at")],
        "email_clicks_90d": [("raw/email_events", "event_type"), ("raw/email_events", "occurred_at")],
        "support_tickets_90d": [("raw/support_tickets", "ticket_id"), ("raw/support_tickets", "created_at")],
        "acquisition_channel": [
            ("raw/crm_contacts", "acquisition_channel"),
            ("raw/web_orders", "acquisition_channel"),
        ],
    },
    "models/rfm_scores": {
        "recency_days": [("features/customer_features", "recency_days")],
        "frequency": [("features/customer_features", "frequency")],
        "monetary_total": [("features/customer_features", "monetary_total")],
        "r_score": [("features/customer_features", "recency_days")],
        "f_score": [("features/customer_features", "frequency")],
        "m_score": [("features/customer_features", "monetary_total")],
    },
    "models/clv_scores": {
        "customer_key": _KEY,
        "frequency": _ORDERS_AT,
        "recency": _ORDERS_AT,
        "T": _ORDERS_AT,
        "expected_value_per_order": _ORDERS_AMOUNT,
        "cltv": _ORDERS_AT + _ORDERS_AMOUNT,
    },
    "segments/assignments": {
        "value_tier": [("models/clv_scores", "cltv")],
        "lifecycle_stage": [("features/customer_features", "lifecycle_stage")],
        "risk_tier": [("models/churn_scores", "risk_tier")],
        "rfm_segment": [("models/rfm_scores", "rfm_segment")],
        "behaviour_cluster": [("models/behaviour_clusters", "cluster_id")],
        "action_segment": [
            ("models/clv_scores", "cltv"),
            ("features/customer_features", "lifecycle_stage"),
            ("models/churn_scores", "risk_tier"),
            ("models/rfm_scores", "rfm_segment"),
            ("models/behaviour_clusters", "cluster_id"),
        ],
        "scheme_version": [("segments/changelog", "scheme_version")],
    },
    "segments/profiles": {
        "action_segment": [("segments/assignments", "action_segment")],
        "customers": [("segments/assignments", "customer_key")],
        "mean_cltv": [("models/clv_scores", "cltv")],
        "mean_churn_probability": [("models/churn_scores", "churn_probability")],
    },
    "activation/holdouts": {
        "customer_key": [("segments/assignments", "customer_key")],
        "action_segment": [("segments/assignments", "action_segment")],
    },
    "measurement/segment_kpis": {
        "action_segment": [("segments/assignments", "action_segment")],
        "mean_cltv": [("models/clv_scores", "cltv")],
        "total_cltv": [("models/clv_scores", "cltv")],
        "mean_churn_probability": [("models/churn_scores", "churn_probability")],
        "revenue_30d": _ORDERS_AMOUNT,
        "revenue_90d": _ORDERS_AMOUNT,
    },
    "measurement/migration": {
        "from_segment": [("segments/assignments", "action_segment")],
        "to_segment": [("segments/assignments", "action_segment")],
    },
    "measurement/lift": {
        "treatment_customers": [("segments/assignments", "customer_key")],
        "holdout_customers": [("activation/holdouts", "customer_key")],
        "incremental_revenue": _ORDERS_AMOUNT,
    },
    "measurement/channel_kpis": {
        "acquisition_channel": [("raw/marketing_spend", "channel")],
        "spend": [("raw/marketing_spend", "spend")],
        "mean_cltv_new_customers": [("models/clv_scores", "cltv")],
    },
}


def with_column_lineage(assets: list) -> list:
    """Attach `COLUMN_LINEAGE` to the assets as `dagster/column_lineage` definition metadata."""

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        deps = COLUMN_LINEAGE.get(spec.key.to_user_string())
        if not deps:
            return spec
        lineage = dg.TableColumnLineage(
            deps_by_column={
                column: [
                    dg.TableColumnDep(asset_key=dg.AssetKey.from_user_string(a), column_name=c)
                    for a, c in pairs
                ]
                for column, pairs in deps.items()
            }
        )
        return spec.merge_attributes(metadata={"dagster/column_lineage": lineage})

    return list(dg.map_asset_specs(attach, assets))


# Distribution tables show at most this many snapshots of a backfill: the latest ones.
SNAPSHOTS_SHOWN = 6


def distribution_markdown(
    conn, table: str, column: str, dates: list[date], order: list[str] | None = None
) -> str:
    """Customers per value of `column` (rows) and snapshot (columns), with shares."""
    shown = dates[-SNAPSHOTS_SHOWN:]
    rows = conn.execute(
        f"SELECT {warehouse.quote(column)}, snapshot_date, count(*) FROM {warehouse.table_ref(table)} "
        "WHERE snapshot_date IN (SELECT unnest(?)) GROUP BY ALL",
        [shown],
    ).fetchall()
    counts = {(value, snapshot): n for value, snapshot, n in rows}
    totals = {snapshot: sum(n for (_, s), n in counts.items() if s == snapshot) for snapshot in shown}
    values = [v for v in order or [] if any(k[0] == v for k in counts)]
    values += sorted({value for value, _ in counts if value not in values}, key=str)
    lines = [
        f"| {column} | " + " | ".join(snapshot.isoformat() for snapshot in shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for value in values:
        cells = []
        for snapshot in shown:
            n = counts.get((value, snapshot), 0)
            cells.append(f"{n:,} ({n / totals[snapshot]:.0%})" if totals[snapshot] else "0")
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"{totals[s]:,}" for s in shown) + " |")
    return "\n".join(lines)


def count_rows(conn, sql: str, params: list) -> int:
    # fetchall, not fetchone: duckdb 2.0 keeps a fetchone() result open and refuses the next register().
    return conn.execute(sql, params).fetchall()[0][0]


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    if frame.empty:
        return "(none)"
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    lines = [header, "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
