"""Ingestion: parse landing files against the source contracts, quarantine bad rows with a reason, great-expectations suites.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.ingestion._expectations import (
    validate_with_contract,
)
from segmentation_platform.core.ingestion._landing import (
    LANDING_FILE,
    METADATA_COLUMNS,
    QUARANTINE_COLUMNS,
    LandingFileError,
    ParsedBatch,
    landing_files,
    parse_landing_files,
    raw_table_columns,
)

__all__ = [
    "LANDING_FILE",
    "LandingFileError",
    "METADATA_COLUMNS",
    "ParsedBatch",
    "QUARANTINE_COLUMNS",
    "landing_files",
    "parse_landing_files",
    "raw_table_columns",
    "validate_with_contract",
]
