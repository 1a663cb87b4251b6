"""Identity resolution: normalize source records, link them (deterministic + Splink), keep customer keys stable, build golden records.

The names below are the public surface (what notebooks, defs, tests, benchmarks and other
domains import); the private modules behind them may change.
"""

from segmentation_platform.core.identity._config import IdentityConfig, load_identity_config
from segmentation_platform.core.identity._normalize import (
    email_local_part,
    first_name_forms,
    normalize_address,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_postcode,
)
from segmentation_platform.core.identity._quality import (
    check_cluster_size_cap,
    check_every_record_has_one_key,
    check_keys_stable_unless_logged,
    clustering_accuracy,
    compare_key_maps,
    evidence_ceiling,
)
from segmentation_platform.core.identity._resolve import IdentityResult, resolve_identities
from segmentation_platform.core.identity._tables import (
    CUSTOMER_KEY_MAP_SCHEMA,
    CUSTOMERS_SCHEMA,
    IDENTITY_CHANGELOG_SCHEMA,
    IDENTITY_IDENTIFIERS_SCHEMA,
    IDENTITY_LINKS_SCHEMA,
    IDENTITY_MATCH_WEIGHTS_SCHEMA,
    IDENTITY_MODEL_SCHEMA,
    IDENTITY_RECORDS_SCHEMA,
    IDENTITY_REVIEW_FLAGS_SCHEMA,
    TABLE_SCHEMAS,
)

__all__ = [
    "CUSTOMERS_SCHEMA",
    "CUSTOMER_KEY_MAP_SCHEMA",
    "IDENTITY_CHANGELOG_SCHEMA",
    "IDENTITY_IDENTIFIERS_SCHEMA",
    "IDENTITY_LINKS_SCHEMA",
    "IDENTITY_MATCH_WEIGHTS_SCHEMA",
    "IDENTITY_MODEL_SCHEMA",
    "IDENTITY_RECORDS_SCHEMA",
    "IDENTITY_REVIEW_FLAGS_SCHEMA",
    "TABLE_SCHEMAS",
    "IdentityConfig",
    "IdentityResult",
    "check_cluster_size_cap",
    "check_every_record_has_one_key",
    "check_keys_stable_unless_logged",
    "clustering_accuracy",
    "compare_key_maps",
    "email_local_part",
    "evidence_ceiling",
    "first_name_forms",
    "load_identity_config",
    "normalize_address",
    "normalize_email",
    "normalize_name",
    "normalize_phone",
    "normalize_postcode",
    "resolve_identities",
]
