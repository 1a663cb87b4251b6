"""Source contracts: the one declaration of every landing source.

Ingestion parses against these, the great-expectations suites and the Dagster column
schemas are derived from them, and `data/README.md` documents them (a test keeps the
doc and this file in agreement).
"""

from dataclasses import dataclass, field

# Logical types understood by the parser; each maps to one DuckDB type.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "decimal": "DOUBLE",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "boolean": "BOOLEAN",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    required: bool = False
    pii: bool = False
    min_value: float | None = None
    max_value: float | None = None
    allowed_values: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.type not in DUCKDB_TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r}")

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class SourceContract:
    name: str
    description: str
    # Columns that identify one row; a repeated key within a load is quarantined as a duplicate.
    key: tuple[str, ...]
    event_time: str
    columns: tuple[Column, ...]
    # SQL over the raw table naming the person-level record a row belongs to (the
    # identity key map's source_id); NULL means anonymous. None: the source has no people.
    person_ref: str | None = None
    # Groups of columns of which at least one must be filled (e.g. email or subscriber_id).
    require_any: tuple[tuple[str, ...], ...] = field(default=())

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.pii]


def _c(name, type_, description, **kw) -> Column:
    return Column(name=name, type=type_, description=description, **kw)


_PERSON_COLUMNS = (
    _c("first_name", "string", "Given name as typed by the customer", pii=True),
    _c("last_name", "string", "Family name", pii=True),
    _c("email", "string", "Email address (any case, may carry whitespace)", pii=True),
    _c("phone", "string", "Phone number in any national or international format", pii=True),
    _c("address", "string", "Street address", pii=True),
    _c("postcode", "string", "Postal code", pii=True),
)

_BASKET_COLUMNS = (
    _c("category", "string", "Main product category of the basket"),
    _c("cost", "decimal", "Cost of goods sold, same currency as amount", min_value=0),
    _c("discount", "decimal", "Discount granted, same currency as amount", min_value=0),
    _c("items", "integer", "Number of items", min_value=0),
)

WEB_ORDERS = SourceContract(
    name="web_orders",
    description="Ecommerce orders, one row per order.",
    key=("order_id",),
    person_ref="account_id",
    event_time="ordered_at",
    columns=(
        _c("order_id", "string", "Order number, unique per order", required=True),
        _c("account_id", "string", "Web shop account that placed the order", required=True),
        _c("ordered_at", "timestamp", "When the order was placed (ISO 8601)", required=True),
        _c("amount", "decimal", "Order revenue after discounts, gross of cost", required=True, min_value=0),
        *_PERSON_COLUMNS,
        _c("crm_contact_id", "string", "CRM contact id the shop linked the account to"),
        *_BASKET_COLUMNS,
        _c("acquisition_channel", "string", "UTM / marketing channel that acquired the account"),
    ),
)

POS_TRANSACTIONS = SourceContract(
    name="pos_transactions",
    description="Store receipts; loyalty_id and phone may be empty for anonymous shoppers.",
    key=("receipt_id",),
    person_ref="coalesce(loyalty_id, CASE WHEN coalesce(phone, email) IS NOT NULL THEN 'receipt:' || receipt_id END)",
    event_time="purchased_at",
    columns=(
        _c("receipt_id", "string", "Receipt number, unique per receipt", required=True),
        _c("store_id", "string", "Store that issued the receipt", required=True),
        _c("purchased_at", "timestamp", "When the purchase happened (ISO 8601)", required=True),
        _c("amount", "decimal", "Receipt revenue after discounts", required=True, min_value=0),
        _c("loyalty_id", "string", "Loyalty card number; empty when anonymous"),
        _c("phone", "string", "Phone number given at the till", pii=True),
        _c("email", "string", "Email given for an e-receipt", pii=True),
        *_BASKET_COLUMNS,
    ),
)

CRM_CONTACTS = SourceContract(
    name="crm_contacts",
    description="CRM contact records; a new row each time a contact is created or updated.",
    key=("contact_id", "updated_at"),
    person_ref="contact_id",
    event_time="updated_at",
    columns=(
        _c("contact_id", "string", "CRM contact id", required=True),
        _c("updated_at", "timestamp", "When this version of the contact was saved", required=True),
        *_PERSON_COLUMNS,
        _c("birth_date", "date", "Date of birth", pii=True),
        _c("loyalty_id", "string", "Loyalty card number held by the contact"),
        _c("web_account_id", "string", "Web shop account linked to the contact"),
        _c("email_consent", "boolean", "Consent to marketing email"),
        _c("sms_consent", "boolean", "Consent to marketing SMS"),
        _c("acquisition_channel", "string", "Channel that acquired the contact"),
    ),
)

SUPPORT_TICKETS = SourceContract(
    name="support_tickets",
    description="Customer service tickets.",
    key=("ticket_id",),
    person_ref="ticket_id",
    event_time="created_at",
    require_any=(("email", "contact_id"),),
    columns=(
        _c("ticket_id", "string", "Ticket id", required=True),
        _c("created_at", "timestamp", "When the ticket was opened", required=True),
        _c("email", "string", "Email of the requester", pii=True),
        _c("contact_id", "string", "CRM contact id of the requester"),
        _c("category", "string", "Ticket topic (delivery, returns, billing, product, account)"),
        _c("satisfaction", "integer", "Post-resolution satisfaction score 1-5", min_value=1, max_value=5),
    ),
)

EMAIL_EVENTS = SourceContract(
    name="email_events",
    description="Email service provider events.",
    key=("event_id",),
    person_ref="coalesce(subscriber_id, 'email:' || lower(trim(email)))",
    event_time="occurred_at",
    require_any=(("email", "subscriber_id"),),
    columns=(
        _c("event_id", "string", "Event id", required=True),
        _c("occurred_at", "timestamp", "When the event happened", required=True),
        _c(
            "event_type",
            "string",
            "send, open, click, unsubscribe or bounce",
            required=True,
            allowed_values=("send", "open", "click", "unsubscribe", "bounce"),
        ),
        _c("email", "string", "Recipient email", pii=True),
        _c("subscriber_id", "string", "Email platform subscriber id"),
        _c("campaign_id", "string", "Campaign the email belongs to"),
    ),
)

MARKETING_SPEND = SourceContract(
    name="marketing_spend",
    description="Marketing spend per day and acquisition channel.",
    key=("date", "channel", "campaign"),
    event_time="date",
    columns=(
        _c("date", "date", "Day the money was spent", required=True),
        _c("channel", "string", "Acquisition channel (matches acquisition_channel elsewhere)", required=True),
        _c("spend", "decimal", "Spend in the reporting currency", required=True, min_value=0),
        _c("campaign", "string", "Campaign name"),
        _c("impressions", "integer", "Ad impressions", min_value=0),
        _c("clicks", "integer", "Ad clicks", min_value=0),
    ),
)

CONTRACTS: dict[str, SourceContract] = {
    c.name: c
    for c in (WEB_ORDERS, POS_TRANSACTIONS, CRM_CONTACTS, SUPPORT_TICKETS, EMAIL_EVENTS, MARKETING_SPEND)
}


def contracts_markdown() -> str:
    """The input contract as markdown; `data/README.md` embeds exactly this text."""
    out = []
    for contract in CONTRACTS.values():
        out.append(f"### `{contract.name}`\n")
        out.append(f"{contract.description} Row key: {', '.join(contract.key)}.")
        if contract.require_any:
            groups = "; ".join(" or ".join(g) for g in contract.require_any)
            out[-1] += f" Each row needs {groups}."
        out.append("")
        out.append("| column | type | required | PII | rule | description |")
        out.append("|---|---|---|---|---|---|")
        for c in contract.columns:
            rules = []
            if c.min_value is not None:
                rules.append(f">= {c.min_value:g}")
            if c.max_value is not None:
                rules.append(f"<= {c.max_value:g}")
            if c.allowed_values:
                rules.append("one of " + ", ".join(c.allowed_values))
            out.append(
                f"| {c.name} | {c.type} | {'yes' if c.required else ''} | {'yes' if c.pii else ''} "
                f"| {'; '.join(rules)} | {c.description} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(contracts_markdown(), end="")
