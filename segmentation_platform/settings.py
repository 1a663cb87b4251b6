"""Where the platform reads and writes, from environment variables with local defaults.

The relative default resolves against the working directory, so `make demo`, `make ui`
and the CLI all use the repository's `data/` folder when started from its root.
"""

import os
from datetime import date
from pathlib import Path

# data/landing (input), data/warehouse.duckdb, data/exports, data/reports.
DATA_DIR = Path(os.environ.get("SEGMENTATION_DATA_DIR", "data"))
# First day of the daily ingestion partitions and of the weekly snapshots.
PARTITIONS_START = date.fromisoformat(os.environ.get("SEGMENTATION_START_DATE", "2025-01-01"))
# Governance configs that may live outside the package (a reviewed copy, a test's variant);
# unset means the packaged file. Read here only: defs/_lib/config.py passes them on.
SEGMENT_SCHEME_PATH = os.environ.get("SEGMENTATION_SEGMENT_SCHEME") or None
DESTINATIONS_PATH = os.environ.get("SEGMENTATION_DESTINATIONS_CONFIG") or None
# Where the UI's source links point (a hosted repository); unset means local files.
GIT_URL = os.environ.get("SEGMENTATION_GIT_URL") or None
GIT_BRANCH = os.environ.get("SEGMENTATION_GIT_BRANCH", "main")
