"""Identity resolution configuration: `config/identity.yaml`, validated on load.

Every knob that can move a person between customer keys lives in the YAML file (versioned
with the code), not in code, so a merge can always be traced back to the rules in force.
Read with the platform's one loader (`core.config.read_config`): a mistake is a
`ConfigError` naming the file, the line, the dotted key and what is expected.
"""

import datetime as dt
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from segmentation_platform.core.config import CONFIG_DIR, ConfigError, LocatedDict, Section, read_config

DEFAULT_CONFIG_PATH = CONFIG_DIR / "identity.yaml"

COMPARISON_NAMES = ("first_name", "last_name", "address", "birth_date", "email", "phone")
IDENTIFIER_TYPES = ("email", "phone", "loyalty_id")
# Columns of the Splink input table that blocking rules may name.
BLOCKING_COLUMNS = (
    "first_name",
    "last_name",
    "address",
    "postcode",
    "birth_date",
    "email",
    "email_local",
    "phone",
)
SOURCES = ("web_orders", "pos_transactions", "crm_contacts", "support_tickets", "email_events")
SURVIVORSHIP_FIELDS = ("first_name", "last_name", "birth_date", "email", "phone", "address", "postcode")


@dataclass(frozen=True)
class NormalizationConfig:
    default_phone_region: str
    phone_validation: str
    min_birth_date: dt.date
    # nickname -> formal names it may stand for
    nicknames: dict[str, tuple[str, ...]]
    address_abbreviations: dict[str, str]


@dataclass(frozen=True)
class DeterministicConfig:
    identifiers: tuple[str, ...]
    use_historical_values: bool
    max_records_per_identifier: int
    compatible_first_name_similarity: float


@dataclass(frozen=True)
class ProbabilisticConfig:
    enabled: bool
    match_probability_threshold: float
    review_probability_threshold: float
    comparisons: tuple[str, ...]
    # Jaro-Winkler levels of the first_name and last_name comparisons, highest first.
    name_similarity_thresholds: tuple[float, ...]
    term_frequency_adjustments: tuple[str, ...]
    blocking_rules: tuple[str | tuple[str, ...], ...]
    em_blocking_rules: tuple[str | tuple[str, ...], ...]
    prior_rules: tuple[str | tuple[str, ...], ...]
    prior_recall: float
    u_max_pairs: float
    em_max_pairs: float
    seed: int
    require_any_of: tuple[str, ...]
    min_records_to_train: int
    m_probability_floor: float


@dataclass(frozen=True)
class ClusteringConfig:
    max_cluster_size: int
    conflict_fields: tuple[str, ...]
    birth_date_typo_edits: int


@dataclass(frozen=True)
class KeysConfig:
    prefix: str
    digits: int


@dataclass(frozen=True)
class SurvivorshipConfig:
    trusted_sources: dict[str, tuple[str, ...]]
    most_recent: tuple[str, ...]


@dataclass(frozen=True)
class RuntimeConfig:
    """How a run uses the machine; never what it computes."""

    duckdb_memory_limit: str | None


@dataclass(frozen=True)
class IdentityConfig:
    version: int
    normalization: NormalizationConfig
    deterministic: DeterministicConfig
    probabilistic: ProbabilisticConfig
    clustering: ClusteringConfig
    keys: KeysConfig
    survivorship: SurvivorshipConfig
    runtime: RuntimeConfig

    def result_settings(self) -> tuple:
        """Everything that can change a result, i.e. all but `runtime`: what code_version hashes."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "runtime")


def load_identity_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> IdentityConfig:
    """Read and validate the YAML file (default: the packaged one), with optional overrides.

    `overrides` is a nested mapping merged over the file, e.g.
    `{"probabilistic": {"match_probability_threshold": 0.995}}` — handy for tests and
    one-off runs without editing the versioned file. An invalid overriding value is
    reported at the line of the key it replaces.
    """
    top = read_config(path if path is not None else DEFAULT_CONFIG_PATH)
    if overrides:
        top = Section(_merged(top.data, overrides), top.file, "")
    return _identity_config(top)


def _identity_config(top: Section) -> IdentityConfig:
    names = [f.name for f in fields(IdentityConfig)]
    top.only(names, required=[n for n in names if n != "runtime"])

    def section(name: str, kind: type) -> Section:
        """A section and its keys: the dataclass's fields, all required but the runtime knobs."""
        keys = [f.name for f in fields(kind)]
        return top.section(name).only(keys, required=[] if kind is RuntimeConfig else keys)

    normalization = section("normalization", NormalizationConfig)
    deterministic = section("deterministic", DeterministicConfig)
    probabilistic = section("probabilistic", ProbabilisticConfig)
    clustering = section("clustering", ClusteringConfig)
    keys = section("keys", KeysConfig)
    survivorship = section("survivorship", SurvivorshipConfig)
    runtime = section("runtime", RuntimeConfig) if top.has("runtime") else None

    match_threshold = _probability(probabilistic, "match_probability_threshold")
    review_threshold = _probability(probabilistic, "review_probability_threshold")
    if review_threshold > match_threshold:
        raise probabilistic.error(
            "review_probability_threshold",
            "probabilistic.review_probability_threshold must not exceed match_probability_threshold "
            f"({review_threshold} > {match_threshold})",
        )
    comparisons = _names(probabilistic, "comparisons", COMPARISON_NAMES)
    trusted = survivorship.section("trusted_sources").only(SURVIVORSHIP_FIELDS)
    trusted_sources = {field: _names(trusted, field, SOURCES) for field in trusted.data}
    most_recent = _names(survivorship, "most_recent", SURVIVORSHIP_FIELDS, allow_empty=True)
    unresolved = set(SURVIVORSHIP_FIELDS) - set(trusted_sources) - set(most_recent)
    if unresolved:
        raise survivorship.error(
            None,
            f"survivorship: fields {sorted(unresolved)} have no rule; list them under "
            "survivorship.trusted_sources or survivorship.most_recent",
        )
    return IdentityConfig(
        version=top.number("version", integer=True, low=1),
        normalization=NormalizationConfig(
            default_phone_region=_region(normalization, "default_phone_region"),
            phone_validation=normalization.choice("phone_validation", ("valid", "possible")),
            min_birth_date=normalization.day("min_birth_date"),
            nicknames=_nicknames(normalization, "nicknames"),
            address_abbreviations=_word_map(normalization, "address_abbreviations"),
        ),
        deterministic=DeterministicConfig(
            identifiers=_names(deterministic, "identifiers", IDENTIFIER_TYPES),
            use_historical_values=deterministic.flag("use_historical_values"),
            max_records_per_identifier=deterministic.number(
                "max_records_per_identifier", integer=True, low=2
            ),
            compatible_first_name_similarity=_probability(deterministic, "compatible_first_name_similarity"),
        ),
        probabilistic=ProbabilisticConfig(
            enabled=probabilistic.flag("enabled"),
            match_probability_threshold=match_threshold,
            review_probability_threshold=review_threshold,
            comparisons=comparisons,
            name_similarity_thresholds=_thresholds(probabilistic, "name_similarity_thresholds"),
            term_frequency_adjustments=_names(probabilistic, "term_frequency_adjustments", comparisons),
            blocking_rules=_rules(probabilistic, "blocking_rules"),
            em_blocking_rules=_rules(probabilistic, "em_blocking_rules"),
            prior_rules=_rules(probabilistic, "prior_rules"),
            prior_recall=_probability(probabilistic, "prior_recall", allow_zero=False),
            u_max_pairs=_pairs(probabilistic, "u_max_pairs"),
            em_max_pairs=_pairs(probabilistic, "em_max_pairs"),
            seed=probabilistic.number("seed", integer=True, low=0),
            require_any_of=_names(probabilistic, "require_any_of", BLOCKING_COLUMNS),
            min_records_to_train=probabilistic.number("min_records_to_train", integer=True, low=100),
            m_probability_floor=_probability(probabilistic, "m_probability_floor"),
        ),
        clustering=ClusteringConfig(
            max_cluster_size=clustering.number("max_cluster_size", integer=True, low=2),
            conflict_fields=_names(clustering, "conflict_fields", ("birth_date",), allow_empty=True),
            birth_date_typo_edits=clustering.number("birth_date_typo_edits", integer=True, low=0),
        ),
        keys=KeysConfig(
            prefix=_key_prefix(keys, "prefix"), digits=keys.number("digits", integer=True, low=6)
        ),
        survivorship=SurvivorshipConfig(trusted_sources=trusted_sources, most_recent=most_recent),
        runtime=RuntimeConfig(
            duckdb_memory_limit=_optional_text(runtime, "duckdb_memory_limit") if runtime else None
        ),
    )


# --- identity-specific values (generic ones use Section's accessors) ---------------------


def _probability(section: Section, name: str, allow_zero: bool = True) -> float:
    value = float(section.number(name, low=0, high=1))
    if not allow_zero and value == 0:
        raise section.error(name, f"{section.key(name)} must be greater than 0")
    return value


def _pairs(section: Section, name: str, minimum: float = 1000) -> float:
    """A pair count; PyYAML reads `5.0e6` (no sign in the exponent) as text, so text is parsed."""
    value = section.data.get(name)
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        number = value
    if isinstance(number, bool) or not isinstance(number, int | float) or number < minimum:
        raise section.error(name, f"{section.key(name)} must be a number >= {minimum:g}, got {value!r}")
    return float(number)


def _thresholds(section: Section, name: str) -> tuple[float, ...]:
    value = section.data.get(name)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1 for v in value)
        or any(a <= b for a, b in zip(value, value[1:], strict=False))
    ):
        raise section.error(
            name,
            f"{section.key(name)} must be a non-empty list of similarities in (0, 1), highest first, "
            f"got {value!r}",
        )
    return tuple(float(v) for v in value)


def _names(
    section: Section, name: str, allowed: tuple[str, ...], allow_empty: bool = False
) -> tuple[str, ...]:
    value = section.data.get(name)
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise section.error(name, f"{section.key(name)} must be a list of names")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise section.error(name, f"{section.key(name)}: unknown {unknown}; allowed: {list(allowed)}")
    if not value and not allow_empty:
        raise section.error(name, f"{section.key(name)} must not be empty")
    return tuple(value)


def _rules(section: Section, name: str) -> tuple[str | tuple[str, ...], ...]:
    value = section.data.get(name)
    if not isinstance(value, list) or not value:
        raise section.error(name, f"{section.key(name)} must be a non-empty list of rules")
    rules: list[str | tuple[str, ...]] = []
    for i, rule in enumerate(value):
        where = f"{section.key(name)}[{i}]"
        line = value.line_of(i) if hasattr(value, "line_of") else section.line_of(name)
        if isinstance(rule, str) and rule.strip():
            rules.append(rule)
        elif isinstance(rule, list) and rule and all(isinstance(c, str) for c in rule):
            unknown = [c for c in rule if c not in BLOCKING_COLUMNS]
            if unknown:
                raise ConfigError(
                    section.file,
                    line,
                    f"{where}: unknown columns {unknown}; allowed: {list(BLOCKING_COLUMNS)}",
                )
            rules.append(tuple(rule))
        else:
            raise ConfigError(
                section.file,
                line,
                f"{where} must be a list of column names or a SQL condition string, got {rule!r}",
            )
    return tuple(rules)


def _region(section: Section, name: str) -> str:
    import phonenumbers

    value = section.data.get(name)
    if not isinstance(value, str) or value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise section.error(
            name,
            f"{section.key(name)} must be a two-letter region code known to phonenumbers (e.g. US, GB), "
            f"got {value!r}",
        )
    return value.upper()


def _word_map(section: Section, name: str) -> dict[str, str]:
    value = section.data.get(name) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise section.error(name, f"{section.key(name)} must map words to words")
    return {k.strip().lower(): v.strip().lower() for k, v in value.items()}


def _nicknames(section: Section, name: str) -> dict[str, tuple[str, ...]]:
    value = section.data.get(name) or {}
    if not isinstance(value, dict):
        raise section.error(
            name, f"{section.key(name)} must map nicknames to a formal name or a list of them"
        )
    result = {}
    for nickname, formal in value.items():
        formals = [formal] if isinstance(formal, str) else formal
        if (
            not isinstance(nickname, str)
            or not isinstance(formals, list)
            or not all(isinstance(f, str) for f in formals)
        ):
            line = value.line_of(nickname) if isinstance(value, LocatedDict) else section.line_of(name)
            raise ConfigError(
                section.file,
                line,
                f"{section.key(name)}.{nickname} must be a formal name or a list of them, got {formal!r}",
            )
        result[nickname.strip().lower()] = tuple(f.strip().lower() for f in formals)
    return result


def _key_prefix(section: Section, name: str) -> str:
    value = section.data.get(name)
    if not isinstance(value, str) or not value.isalpha() or not value.isupper():
        raise section.error(name, f"{section.key(name)} must be upper-case letters, got {value!r}")
    return value


def _optional_text(section: Section, name: str) -> str | None:
    value = section.data.get(name)
    if value is not None and not isinstance(value, str):
        raise section.error(name, f"{section.key(name)} must be a string or null, got {value!r}")
    return value


def _merged(base: dict, overrides: dict[str, Any]) -> LocatedDict:
    """`overrides` merged over `base`, keeping the file lines of the keys it replaces."""
    merged = LocatedDict(base)
    merged.line, merged.key_lines = getattr(base, "line", 0), dict(getattr(base, "key_lines", {}))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merged(base[key], value)
        else:
            merged[key] = value
    return merged
