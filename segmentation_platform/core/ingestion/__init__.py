"""Ingestion: parse landing files against the source contracts, quarantine bad rows with a reason,
validate what was accepted with a great-expectations suite derived from the contract.

`parse_landing_files(contract, files_by_day, ...)` -> `ParsedBatch` (accepted, quarantined,
landing counts); the tables they go to are declared by `raw_schema(contract)` and
`quarantine_schema(source)`; `reconcile_with_landing` and `validate_with_contract` are the
rules of the ingestion asset's checks.
"""

from segmentation_platform.core.ingestion._checks import Reconciliation, reconcile_with_landing
from segmentation_platform.core.ingestion._expectations import SuiteOutcome, validate_with_contract
from segmentation_platform.core.ingestion._landing import (
    LANDING_FILE,
    LandingFileError,
    ParsedBatch,
    landing_files,
    parse_landing_files,
)
from segmentation_platform.core.ingestion._tables import (
    LOAD_METADATA,
    METADATA_COLUMNS,
    TABLE_SCHEMAS,
    quarantine_schema,
    raw_schema,
    raw_table_columns,
)

__all__ = [
    # parsing landing files
    "LANDING_FILE",
    "landing_files",
    "parse_landing_files",
    "ParsedBatch",
    "LandingFileError",
    # the tables
    "raw_schema",
    "quarantine_schema",
    "raw_table_columns",
    "LOAD_METADATA",
    "METADATA_COLUMNS",
    "TABLE_SCHEMAS",
    # the checks' rules
    "reconcile_with_landing",
    "Reconciliation",
    "validate_with_contract",
    "SuiteOutcome",
]
