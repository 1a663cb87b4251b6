"""Churn propensity: BG/NBD-labelled training examples, a lifelines survival model and a calibrated classifier, champion selection.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.churn._model import (
    CLASSIFIER_MODEL,
    DRIVER_COLUMNS,
    LOGIC_VERSION,
    SCORE_COLUMNS,
    SURVIVAL_MODEL,
    ChurnConfig,
    ChurnResult,
    complete_snapshots,
    fit_churn,
    label_snapshots,
    load_churn_config,
)

__all__ = [
    "CLASSIFIER_MODEL",
    "ChurnConfig",
    "ChurnResult",
    "DRIVER_COLUMNS",
    "LOGIC_VERSION",
    "SCORE_COLUMNS",
    "SURVIVAL_MODEL",
    "complete_snapshots",
    "fit_churn",
    "label_snapshots",
    "load_churn_config",
]
