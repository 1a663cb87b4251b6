"""CLV: the BG/NBD + Gamma-Gamma fit (`fit_bgnbd`, `fit_gamma_gamma`), predictions and margin-based CLTV per snapshot.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.clv._bgnbd import (
    BGNBDFit,
    BGNBDParams,
    discounted_expected_purchases,
    expected_purchases,
    fit_bgnbd,
    probability_alive,
)
from segmentation_platform.core.models.clv._clv import CLVResult, fit_clv, score_customers
from segmentation_platform.core.models.clv._gamma_gamma import (
    GammaGammaFit,
    GammaGammaParams,
    expected_value_per_order,
    fit_gamma_gamma,
)
from segmentation_platform.core.models.clv._likelihood import UnidentifiedModel
from segmentation_platform.core.models.clv._simulate import (
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_transaction_log,
)
from segmentation_platform.core.models.clv._snapshot import (
    ClvConfig,
    calibrate,
    load_clv_config,
    score_snapshot,
)
from segmentation_platform.core.models.clv._summary import DAYS_PER_MONTH, transaction_summary
from segmentation_platform.core.models.clv._tables import (
    CLV_SCORES_SCHEMA,
    CLV_VALIDATION_SCHEMA,
    TABLE_SCHEMAS,
)

__all__ = [
    "ClvConfig",
    "CLV_SCORES_SCHEMA",
    "CLV_VALIDATION_SCHEMA",
    "TABLE_SCHEMAS",
    "UnidentifiedModel",
    "BGNBDFit",
    "CLVResult",
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
    "score_customers",
    "score_snapshot",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_transaction_log",
    "transaction_summary",
]
