"""CLV: the BG/NBD + Gamma-Gamma fit (`fit_bgnbd`, `fit_gamma_gamma`), predictions and margin-based CLTV per snapshot.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.clv._bgnbd import (
    DAYS_PER_MONTH,
    BGNBDFit,
    BGNBDParams,
    GammaGammaFit,
    GammaGammaParams,
    discounted_expected_purchases,
    expected_purchases,
    expected_value_per_order,
    fit_bgnbd,
    fit_clv,
    fit_gamma_gamma,
    probability_alive,
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_transaction_log,
    transaction_summary,
)
from segmentation_platform.core.models.clv._snapshot import (
    calibrate,
    load_clv_config,
    score_snapshot,
)
from segmentation_platform.core.models.clv._tables import CLV_SCORES_SCHEMA, CLV_VALIDATION_SCHEMA

__all__ = [
    "CLV_SCORES_SCHEMA",
    "CLV_VALIDATION_SCHEMA",
    "BGNBDFit",
    "BGNBDParams",
    "DAYS_PER_MONTH",
    "GammaGammaFit",
    "GammaGammaParams",
    "calibrate",
    "discounted_expected_purchases",
    "expected_purchases",
    "expected_value_per_order",
    "fit_bgnbd",
    "fit_clv",
    "fit_gamma_gamma",
    "load_clv_config",
    "probability_alive",
    "score_snapshot",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_transaction_log",
    "transaction_summary",
]
