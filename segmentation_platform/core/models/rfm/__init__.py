"""RFM: quintile scores, RFM codes and the named segment map.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.rfm._config import (
    CONFIG_PATH,
    RfmConfig,
    all_codes,
    fm_score,
    load_rfm_config,
)
from segmentation_platform.core.models.rfm._scores import score_rfm
from segmentation_platform.core.models.rfm._tables import RFM_SCORES_SCHEMA, TABLE_SCHEMAS

__all__ = [
    "CONFIG_PATH",
    "RFM_SCORES_SCHEMA",
    "TABLE_SCHEMAS",
    "RfmConfig",
    "all_codes",
    "fm_score",
    "load_rfm_config",
    "score_rfm",
]
