"""churn: public surface."""

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
