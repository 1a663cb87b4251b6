"""The feature registry: every column of `features.customer_features` declared once (type,
unit, window, description, group). The table schema, the query's final casts and
`docs/feature_dictionary.md` are all generated from it, so they cannot drift apart."""

from dataclasses import dataclass

from segmentation_platform.core.features._config import FeatureConfig, load_feature_config
from segmentation_platform.core.warehouse import Column, TableSchema, tables


@dataclass(frozen=True)
class Feature:
    name: str
    sql_type: str
    unit: str
    window: str
    description: str
    group: str


def feature_registry(config: FeatureConfig | None = None) -> tuple[Feature, ...]:
    """Every column of `features.customer_features`, in table order.

    Windowed email columns follow the configured windows, hence a function of the config.
    """
    config = config or FeatureConfig()
    stages = config.lifecycle
    history, as_of = "all history", "as of snapshot"
    rate_window = f"{config.rate_window_days} days"

    def f(name, sql_type, unit, window, description, group):
        return Feature(name, sql_type, unit, window, description, group)

    email_counts = [
        f(
            f"email_{kind}s_{days}d",
            "BIGINT",
            "events",
            f"{days} days",
            f"Email {kind} events in the {days} days before the snapshot.",
            "email",
        )
        for days in config.email_windows_days
        for kind in ("send", "open", "click")
    ]
    return (
        f("snapshot_date", "DATE", "date", "-", "Snapshot: features are as of 00:00 on this date.", "key"),
        f("customer_key", "VARCHAR", "id", "-", "Customer key from identity resolution.", "key"),
        f(
            "lifecycle_stage",
            "VARCHAR",
            "label",
            as_of,
            "prospect (never bought), new (first purchase within "
            f"{stages.new_within_days} days), active (last purchase within {stages.active_within_days} "
            f"days), at_risk (within {stages.at_risk_within_days}), dormant (within "
            f"{stages.dormant_within_days}) or lost.",
            "lifecycle",
        ),
        f("first_purchase_at", "TIMESTAMP", "timestamp", history, "Earliest order or receipt.", "purchases"),
        f("last_purchase_at", "TIMESTAMP", "timestamp", history, "Latest order or receipt.", "purchases"),
        f(
            "recency_days",
            "INTEGER",
            "days",
            history,
            "Days from the last purchase date to the snapshot date (1 = the day before); NULL if none.",
            "purchases",
        ),
        f("frequency", "BIGINT", "orders", history, "Web orders plus store receipts.", "purchases"),
        f(
            "repeat_frequency",
            "BIGINT",
            "days",
            history,
            "Distinct purchase days minus one: the BG/NBD repeat-purchase count (0 if at most one day).",
            "purchases",
        ),
        f(
            "monetary_total",
            "DOUBLE",
            "currency",
            history,
            "Revenue after discounts, all orders.",
            "purchases",
        ),
        f(
            "monetary_avg",
            "DOUBLE",
            "currency",
            history,
            "Mean revenue per order; NULL if none.",
            "purchases",
        ),
        f(
            "mean_interpurchase_days",
            "DOUBLE",
            "days",
            history,
            "Mean days between consecutive orders; NULL below two orders.",
            "purchases",
        ),
        f("web_orders", "BIGINT", "orders", history, "Orders placed in the web shop.", "channel"),
        f(
            "pos_orders",
            "BIGINT",
            "orders",
            history,
            "Receipts from stores (loyalty or e-receipt).",
            "channel",
        ),
        f(
            "web_revenue_share",
            "DOUBLE",
            "share 0-1",
            history,
            "Share of revenue from the web shop; NULL if no revenue.",
            "channel",
        ),
        f(
            "purchase_channels",
            "VARCHAR",
            "label",
            history,
            "web, pos or omnichannel (bought in both); NULL if never bought.",
            "channel",
        ),
        f(
            "distinct_categories",
            "BIGINT",
            "categories",
            history,
            "Distinct product categories among orders with a category.",
            "basket",
        ),
        f(
            "category_entropy",
            "DOUBLE",
            "bits",
            history,
            "Shannon entropy of orders over categories: 0 = one category only; NULL without categories.",
            "basket",
        ),
        f(
            "top_category",
            "VARCHAR",
            "label",
            history,
            "Category with the most orders (ties: alphabetically first).",
            "basket",
        ),
        f(
            "top_category_share",
            "DOUBLE",
            "share 0-1",
            history,
            "Share of categorised orders in the top category.",
            "basket",
        ),
        f(
            "discount_share",
            "DOUBLE",
            "share 0-1",
            history,
            "Discount / (revenue + discount) over orders with a known discount.",
            "basket",
        ),
        f(
            "discounted_order_share",
            "DOUBLE",
            "share 0-1",
            history,
            "Share of orders (with a known discount) that had one.",
            "basket",
        ),
        f(
            "contribution_margin",
            "DOUBLE",
            "currency",
            history,
            "Revenue minus cost of goods over orders with a known cost; NULL if none.",
            "margin",
        ),
        f(
            "margin_rate",
            "DOUBLE",
            "share",
            history,
            "Contribution margin / revenue of the orders with a known cost.",
            "margin",
        ),
        *email_counts,
        f(
            f"email_open_rate_{config.rate_window_days}d",
            "DOUBLE",
            "share 0-1",
            rate_window,
            "Opens per send (capped at 1); NULL without sends.",
            "email",
        ),
        f(
            f"email_click_rate_{config.rate_window_days}d",
            "DOUBLE",
            "share 0-1",
            rate_window,
            "Clicks per send (capped at 1); NULL without sends.",
            "email",
        ),
        f(
            f"support_tickets_{config.support_window_days}d",
            "BIGINT",
            "tickets",
            f"{config.support_window_days} days",
            f"Support tickets opened in the {config.support_window_days} days before the snapshot.",
            "support",
        ),
        f("support_tickets_total", "BIGINT", "tickets", history, "Support tickets ever opened.", "support"),
        f(
            "support_satisfaction_mean",
            "DOUBLE",
            "score 1-5",
            history,
            "Mean post-resolution satisfaction; NULL if never rated.",
            "support",
        ),
        f(
            "acquisition_channel",
            "VARCHAR",
            "label",
            history,
            "Channel of the earliest web order or CRM contact version that names one.",
            "acquisition",
        ),
        f(
            "email_consent",
            "BOOLEAN",
            "flag",
            as_of,
            "Latest statement: CRM email consent, or false after a later unsubscribe; NULL if never stated.",
            "consent",
        ),
        f(
            "sms_consent",
            "BOOLEAN",
            "flag",
            as_of,
            "Latest CRM SMS consent; NULL if never stated.",
            "consent",
        ),
        f("unsubscribed", "BOOLEAN", "flag", as_of, "Has unsubscribed from email at least once.", "consent"),
        f(
            "first_seen_at",
            "TIMESTAMP",
            "timestamp",
            history,
            "Earliest record of any kind: order, receipt, CRM contact, email event, ticket.",
            "relationship",
        ),
        f("last_seen_at", "TIMESTAMP", "timestamp", history, "Latest record of any kind.", "relationship"),
        f(
            "tenure_days",
            "INTEGER",
            "days",
            history,
            "Days from the first_seen_at date to the snapshot date.",
            "relationship",
        ),
    )


def customer_features_schema(config: FeatureConfig) -> TableSchema:
    """`features.customer_features` under `config`: the registry as a table schema (the
    windowed columns follow the configured windows)."""
    return TableSchema(
        table=tables.CUSTOMER_FEATURES,
        grain="customer x snapshot",
        partition_column="snapshot_date",
        description=(
            "Customer features as of 00:00 on each weekly snapshot date (the partition's end): "
            "purchases, channels, basket, margin, email engagement, support, acquisition, consent and "
            "lifecycle stage, one row per customer with any record before the snapshot. Only records "
            "dated before the snapshot are read. Dictionary: docs/feature_dictionary.md."
        ),
        columns=tuple(
            Column(f.name, f.sql_type, f"{f.description} Unit: {f.unit}; window: {f.window}.")
            for f in feature_registry(config)
        ),
    )


def feature_columns(config: FeatureConfig | None = None) -> dict[str, str]:
    """name -> SQL type of `customer_features_schema` (default config: the dataclass defaults)."""
    return customer_features_schema(config or FeatureConfig()).sql_columns


def feature_dictionary_markdown(config: FeatureConfig | None = None) -> str:
    """The feature dictionary; `docs/feature_dictionary.md` is exactly this text."""
    config = config or load_feature_config()
    lines = [
        "# Feature dictionary",
        "",
        "<!-- Generated from segmentation_platform/core/features/ and config/features.yaml:",
        "     python -m segmentation_platform.core.features > docs/feature_dictionary.md -->",
        "",
        f"Table `{tables.CUSTOMER_FEATURES}`: one row per customer and weekly snapshot, for every",
        "customer with at least one purchase, contact, email event or ticket before the snapshot.",
        "A snapshot is taken **as of 00:00 on `snapshot_date`**: only records whose event time is",
        "strictly before that instant are read. Orders are web orders plus store receipts that",
        "identity resolution tied to a customer; anonymous receipts count in no customer.",
        "Counts are 0 when there is nothing to count; rates and shares are NULL when undefined.",
        "",
        "| column | type | unit | window | group | description |",
        "|---|---|---|---|---|---|",
    ]
    for feature in feature_registry(config):
        lines.append(
            f"| {feature.name} | {feature.sql_type} | {feature.unit} | {feature.window} "
            f"| {feature.group} | {feature.description} |"
        )
    stages = config.lifecycle
    lines += [
        "",
        "## Lifecycle stages",
        "",
        "First matching rule wins; days run from the purchase date to the snapshot date.",
        "",
        "| stage | rule |",
        "|---|---|",
        "| prospect | no purchase yet |",
        f"| new | first purchase at most {stages.new_within_days} days ago |",
        f"| active | last purchase at most {stages.active_within_days} days ago |",
        f"| at_risk | last purchase at most {stages.at_risk_within_days} days ago |",
        f"| dormant | last purchase at most {stages.dormant_within_days} days ago |",
        f"| lost | last purchase more than {stages.dormant_within_days} days ago |",
    ]
    return "\n".join(lines) + "\n"
