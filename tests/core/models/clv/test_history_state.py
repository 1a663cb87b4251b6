"""Too little history is a state (InsufficientHistory), a data bug stays an error."""

from datetime import date, datetime

import polars as pl
import pytest

from segmentation_platform.core.models import InsufficientHistory
from segmentation_platform.core.models.clv import load_clv_config, score_snapshot


def _orders(customers: int) -> pl.DataFrame:
    rows = [
        (f"c{i}", datetime(2025, 1, 2 + day), 20.0 + i, 8.0)
        for i in range(customers)
        for day in (0, 5)  # every customer buys twice: a repeat customer
    ]
    return pl.DataFrame(
        rows,
        schema={
            "customer_key": pl.Utf8,
            "purchased_at": pl.Datetime("us"),
            "amount": pl.Float64,
            "cost": pl.Float64,
        },
        orient="row",
    )


def test_a_short_history_raises_insufficient_history_with_the_count():
    config = load_clv_config()
    with pytest.raises(InsufficientHistory) as error:
        score_snapshot(_orders(6), date(2025, 1, 13), config)
    assert error.value.model == "clv"
    assert (
        f"only 6 repeat customers before the snapshot (min_repeat_customers = {config.min_repeat_customers})"
        in (error.value.reason)
    )


def test_a_missing_column_is_an_error_not_a_history_state():
    with pytest.raises(Exception) as error:
        score_snapshot(_orders(80).drop("amount"), date(2025, 1, 13), load_clv_config())
    assert not isinstance(error.value, InsufficientHistory)
