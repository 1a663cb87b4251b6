"""Identity resolution: normalize source records, link them (deterministic + Splink), keep customer keys stable, build golden records.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.identity._config import (
    IdentityConfigError,
    load_identity_config,
)
from segmentation_platform.core.identity._model import (
    DEFAULT_MODEL_PATH,
)
from segmentation_platform.core.identity._quality import (
    check_cluster_size_cap,
    check_every_record_has_one_key,
    clustering_accuracy,
    compare_key_maps,
    evidence_ceiling,
)
from segmentation_platform.core.identity._records import (
    email_local_part,
    email_sql,
    first_name_forms,
    normalize_address,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_postcode,
    postcode_sql,
)
from segmentation_platform.core.identity._resolve import (
    OUTPUT_TABLES,
    resolve_identities,
)

__all__ = [
    "DEFAULT_MODEL_PATH",
    "IdentityConfigError",
    "OUTPUT_TABLES",
    "check_cluster_size_cap",
    "check_every_record_has_one_key",
    "clustering_accuracy",
    "compare_key_maps",
    "email_local_part",
    "email_sql",
    "evidence_ceiling",
    "first_name_forms",
    "load_identity_config",
    "normalize_address",
    "normalize_email",
    "normalize_name",
    "normalize_phone",
    "normalize_postcode",
    "postcode_sql",
    "resolve_identities",
]
