"""RFM: quintile scores, RFM codes and the named segment map.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.models.rfm._scores import (
    CONFIG_PATH,
    RFM_COLUMN_DOCS,
    RFM_COLUMNS,
    RfmConfig,
    all_codes,
    fm_score,
    load_rfm_config,
    score_rfm,
)

__all__ = [
    "CONFIG_PATH",
    "RFM_COLUMNS",
    "RFM_COLUMN_DOCS",
    "RfmConfig",
    "all_codes",
    "fm_score",
    "load_rfm_config",
    "score_rfm",
]
