from pathlib import Path

import pytest

from segmentation_platform.contracts import CONTRACTS, Column, contracts_markdown

REPO = Path(__file__).resolve().parents[2]


def test_data_readme_documents_exactly_the_contracts():
    readme = (REPO / "data" / "README.md").read_text()
    generated = contracts_markdown()
    assert generated in readme, "data/README.md is stale: run `python -m segmentation_platform.contracts`"
    for contract in CONTRACTS.values():
        for column in contract.columns:
            assert f"| {column.name} | {column.type} |" in readme


def test_design_required_columns_are_required():
    required = {
        "web_orders": {"order_id", "account_id", "ordered_at", "amount"},
        "pos_transactions": {"receipt_id", "store_id", "purchased_at", "amount"},
        "crm_contacts": {"contact_id", "updated_at"},
        "support_tickets": {"ticket_id", "created_at"},
        "email_events": {"event_id", "occurred_at", "event_type"},
        "marketing_spend": {"date", "channel", "spend"},
    }
    assert {name: set(c.required_columns) for name, c in CONTRACTS.items()} == required


def test_unknown_column_type_is_rejected():
    with pytest.raises(ValueError, match="unknown type 'money'"):
        Column(name="x", type="money", description="")
