"""Every governance config, read and validated once per code location, then passed in.

Asset factories take their piece of `PlatformConfig` as an argument; no defs module reads
a YAML file at import. A broken file fails here, at load, with `file:line: reason`.
Environment overrides of config paths are read in `settings` and nowhere else.
"""

from dataclasses import dataclass
from pathlib import Path

from segmentation_platform import settings
from segmentation_platform.core import activation, features, identity, segments
from segmentation_platform.core.config import CONFIG_DIR
from segmentation_platform.core.models import churn, clustering, clv, rfm


@dataclass(frozen=True)
class PlatformConfig:
    identity: "identity.IdentityConfig"
    features: "features.FeatureConfig"
    rfm: "rfm.RfmConfig"
    clv: "clv.ClvConfig"
    churn: "churn.ChurnConfig"
    clustering: "clustering.ClusteringConfig"
    scheme: "segments.SegmentScheme"
    activation: "activation.ActivationConfig"


def load_platform_config(
    config_dir: Path = CONFIG_DIR,
    *,
    scheme_path: Path | str | None = None,
    destinations_path: Path | str | None = None,
) -> PlatformConfig:
    """The files in `config_dir`; the scheme and destinations may come from elsewhere."""
    config_dir = Path(config_dir)
    return PlatformConfig(
        identity=identity.load_identity_config(config_dir / "identity.yaml"),
        features=features.load_feature_config(config_dir / "features.yaml"),
        rfm=rfm.load_rfm_config(config_dir / "rfm_segments.yaml"),
        clv=clv.load_clv_config(config_dir / "clv.yaml"),
        churn=churn.load_churn_config(config_dir / "churn.yaml"),
        clustering=clustering.load_clustering_config(config_dir / "clustering.yaml"),
        scheme=segments.load_scheme(scheme_path or config_dir / "segment_scheme.yaml"),
        activation=activation.load_activation_config(destinations_path or config_dir / "destinations.yaml"),
    )


def platform_config_from_settings() -> PlatformConfig:
    """What the code location runs with: the packaged configs, paths overridden by `settings`."""
    return load_platform_config(
        scheme_path=settings.SEGMENT_SCHEME_PATH, destinations_path=settings.DESTINATIONS_PATH
    )
