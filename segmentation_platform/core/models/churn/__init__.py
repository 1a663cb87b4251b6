"""Churn propensity: BG/NBD-labelled training examples, a lifelines survival model and a calibrated classifier, champion selection.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.churn._config import (
    CLASSIFIER_MODEL,
    LOGIC_VERSION,
    SURVIVAL_MODEL,
    ChurnConfig,
    load_churn_config,
)
from segmentation_platform.core.models.churn._labels import complete_snapshots, label_snapshots
from segmentation_platform.core.models.churn._model import ChurnResult, fit_churn
from segmentation_platform.core.models.churn._tables import (
    CHURN_DRIVERS_SCHEMA,
    CHURN_SCORES_SCHEMA,
    TABLE_SCHEMAS,
)
from segmentation_platform.core.models.churn._training import load_purchases, load_training_frame

__all__ = [
    "CHURN_DRIVERS_SCHEMA",
    "CHURN_SCORES_SCHEMA",
    "CLASSIFIER_MODEL",
    "ChurnConfig",
    "ChurnResult",
    "LOGIC_VERSION",
    "SURVIVAL_MODEL",
    "TABLE_SCHEMAS",
    "complete_snapshots",
    "fit_churn",
    "label_snapshots",
    "load_churn_config",
    "load_purchases",
    "load_training_frame",
]
