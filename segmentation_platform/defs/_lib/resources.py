from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform import settings


class LandingZone(dg.ConfigurableResource):
    """Folder of landing files, `<source>/<YYYY-MM-DD>.csv` (or .parquet)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)


def resources_for(data_dir: Path = settings.DATA_DIR) -> dict:
    from segmentation_platform.defs.activation.assets import activation_resources

    data_dir = Path(data_dir)
    return {
        "duckdb": DuckDBResource(database=str(data_dir / "warehouse.duckdb")),
        "landing": LandingZone(path=str(data_dir / "landing")),
        **activation_resources(data_dir),
    }
