"""Where the packaged governance artefacts live (`segmentation_platform/config/`)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
