from datetime import date

import pandas as pd

from segmentation_platform.contracts import WEB_ORDERS
from segmentation_platform.core.ingestion import validate_with_contract


def _orders(**overrides):
    frame = pd.DataFrame(
        {
            "order_id": ["O1", "O2"],
            "account_id": ["A1", "A2"],
            "ordered_at": pd.to_datetime(["2025-03-01 10:00", "2025-03-01 11:00"]),
            "amount": [10.0, 20.0],
            "_partition_date": [date(2025, 3, 1)] * 2,
        }
    )
    for column in WEB_ORDERS.column_names:
        if column not in frame:
            frame[column] = None
    return frame.assign(**overrides)


def test_contract_suite_passes_clean_rows():
    outcome = validate_with_contract(WEB_ORDERS, _orders())
    assert outcome.success and outcome.failed == []
    assert outcome.evaluated > len(WEB_ORDERS.columns)


def test_contract_suite_reports_the_broken_expectations():
    outcome = validate_with_contract(WEB_ORDERS, _orders(amount=[-1.0, 20.0], order_id=["O1", "O1"]))
    assert not outcome.success
    failed = {(f["expectation"], str(f["column"])) for f in outcome.failed}
    assert ("expect_column_values_to_be_between", "amount") in failed
    assert ("expect_compound_columns_to_be_unique", "['order_id', '_partition_date']") in failed
