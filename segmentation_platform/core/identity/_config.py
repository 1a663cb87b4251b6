"""Identity resolution configuration: `config/identity.yaml`, validated on load.

Every knob that can move a person between customer keys lives in the YAML file (versioned
with the code), not in code, so a merge can always be traced back to the rules in force.
Errors name the offending key and what is expected.
"""

import copy
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segmentation_platform.core.config import ConfigError
from segmentation_platform.core.config._paths import CONFIG_DIR

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


class IdentityConfigError(ConfigError):
    """identity.yaml is invalid: the platform's ConfigError, with the key and the fix."""

    def __init__(self, message: str):
        super().__init__(DEFAULT_CONFIG_PATH.name, None, message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.args[0]


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
    # The validated mapping the dataclasses were built from: stored with the model artefact.
    raw: dict[str, Any]


def load_identity_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> IdentityConfig:
    """Read and validate the YAML file (default: the packaged one), with optional overrides.

    `overrides` is a nested mapping merged over the file, e.g.
    `{"probabilistic": {"match_probability_threshold": 0.995}}` — handy for tests and
    one-off runs without editing the versioned file.
    """
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IdentityConfigError(f"cannot read identity config {config_path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IdentityConfigError(f"{config_path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise IdentityConfigError(f"{config_path}: expected a mapping at the top level")
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return identity_config_from_dict(data)
    except IdentityConfigError as exc:
        raise IdentityConfigError(f"{config_path}: {exc}") from None


def identity_config_from_dict(data: dict[str, Any]) -> IdentityConfig:
    section = _Section(data, "")
    normalization = section.section("normalization")
    deterministic = section.section("deterministic")
    probabilistic = section.section("probabilistic")
    clustering = section.section("clustering")
    keys = section.section("keys")
    survivorship = section.section("survivorship")
    runtime = section.section("runtime", required=False)

    phone_validation = normalization.choice("phone_validation", ("valid", "possible"))
    match_threshold = probabilistic.probability("match_probability_threshold")
    review_threshold = probabilistic.probability("review_probability_threshold")
    if review_threshold > match_threshold:
        raise IdentityConfigError(
            "probabilistic.review_probability_threshold must not exceed match_probability_threshold "
            f"({review_threshold} > {match_threshold})"
        )
    comparisons = probabilistic.names("comparisons", COMPARISON_NAMES)
    trusted = survivorship.section("trusted_sources")
    trusted_sources = {
        field: tuple(trusted.names(field, SOURCES)) for field in trusted.keys(allowed=SURVIVORSHIP_FIELDS)
    }
    config = IdentityConfig(
        version=section.integer("version", minimum=1),
        normalization=NormalizationConfig(
            default_phone_region=normalization.region("default_phone_region"),
            phone_validation=phone_validation,
            min_birth_date=normalization.date("min_birth_date"),
            nicknames=normalization.nickname_map("nicknames"),
            address_abbreviations=normalization.string_map("address_abbreviations"),
        ),
        deterministic=DeterministicConfig(
            identifiers=deterministic.names("identifiers", IDENTIFIER_TYPES),
            use_historical_values=deterministic.boolean("use_historical_values"),
            max_records_per_identifier=deterministic.integer("max_records_per_identifier", minimum=2),
            compatible_first_name_similarity=deterministic.probability("compatible_first_name_similarity"),
        ),
        probabilistic=ProbabilisticConfig(
            enabled=probabilistic.boolean("enabled"),
            match_probability_threshold=match_threshold,
            review_probability_threshold=review_threshold,
            comparisons=comparisons,
            term_frequency_adjustments=probabilistic.names("term_frequency_adjustments", comparisons),
            blocking_rules=probabilistic.rules("blocking_rules"),
            em_blocking_rules=probabilistic.rules("em_blocking_rules"),
            prior_rules=probabilistic.rules("prior_rules"),
            prior_recall=probabilistic.probability("prior_recall", allow_zero=False),
            u_max_pairs=probabilistic.number("u_max_pairs", minimum=1000),
            em_max_pairs=probabilistic.number("em_max_pairs", minimum=1000),
            seed=probabilistic.integer("seed", minimum=0),
            require_any_of=probabilistic.names("require_any_of", BLOCKING_COLUMNS),
            min_records_to_train=probabilistic.integer("min_records_to_train", minimum=100),
            m_probability_floor=probabilistic.probability("m_probability_floor"),
        ),
        clustering=ClusteringConfig(
            max_cluster_size=clustering.integer("max_cluster_size", minimum=2),
            conflict_fields=clustering.names("conflict_fields", ("birth_date",), allow_empty=True),
            birth_date_typo_edits=clustering.integer("birth_date_typo_edits", minimum=0),
        ),
        keys=KeysConfig(prefix=keys.key_prefix("prefix"), digits=keys.integer("digits", minimum=6)),
        survivorship=SurvivorshipConfig(
            trusted_sources=trusted_sources,
            most_recent=survivorship.names("most_recent", SURVIVORSHIP_FIELDS, allow_empty=True),
        ),
        runtime=RuntimeConfig(
            duckdb_memory_limit=runtime.optional_string("duckdb_memory_limit") if runtime else None
        ),
        raw=copy.deepcopy(data),
    )
    unresolved = set(SURVIVORSHIP_FIELDS) - set(trusted_sources) - set(config.survivorship.most_recent)
    if unresolved:
        raise IdentityConfigError(
            f"survivorship: fields {sorted(unresolved)} have no rule; list them under "
            "survivorship.trusted_sources or survivorship.most_recent"
        )
    return config


class _Section:
    """Typed accessors over one mapping of the YAML, naming the full key path in errors."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise IdentityConfigError(f"{path or 'top level'}: expected a mapping, got {type(data).__name__}")
        self.data = data
        self.path = path

    def _key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str) -> Any:
        if name not in self.data:
            raise IdentityConfigError(f"missing key {self._key(name)}")
        return self.data[name]

    def keys(self, allowed: tuple[str, ...]) -> list[str]:
        unknown = [k for k in self.data if k not in allowed]
        if unknown:
            raise IdentityConfigError(f"{self.path}: unknown keys {unknown}; allowed: {list(allowed)}")
        return list(self.data)

    def section(self, name: str, required: bool = True) -> "_Section | None":
        if not required and name not in self.data:
            return None
        return _Section(self._get(name), self._key(name))

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise IdentityConfigError(f"{self._key(name)} must be true or false, got {value!r}")
        return value

    def integer(self, name: str, minimum: int) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise IdentityConfigError(f"{self._key(name)} must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, name: str, minimum: float) -> float:
        value = self._get(name)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise IdentityConfigError(f"{self._key(name)} must be a number >= {minimum}, got {value!r}")
        return float(value)

    def probability(self, name: str, allow_zero: bool = True) -> float:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise IdentityConfigError(f"{self._key(name)} must be a probability in [0, 1], got {value!r}")
        if not allow_zero and value == 0:
            raise IdentityConfigError(f"{self._key(name)} must be greater than 0")
        return float(value)

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self._get(name)
        if value not in allowed:
            raise IdentityConfigError(f"{self._key(name)} must be one of {list(allowed)}, got {value!r}")
        return value

    def region(self, name: str) -> str:
        import phonenumbers

        value = self._get(name)
        if not isinstance(value, str) or value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise IdentityConfigError(
                f"{self._key(name)} must be a two-letter region code known to phonenumbers (e.g. US, GB), "
                f"got {value!r}"
            )
        return value.upper()

    def date(self, name: str) -> dt.date:
        value = self._get(name)
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise IdentityConfigError(f"{self._key(name)} must be an ISO date, got {value!r}") from None

    def string_map(self, name: str) -> dict[str, str]:
        value = self._get(name) or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise IdentityConfigError(f"{self._key(name)} must map words to words")
        return {k.strip().lower(): v.strip().lower() for k, v in value.items()}

    def nickname_map(self, name: str) -> dict[str, tuple[str, ...]]:
        value = self._get(name) or {}
        if not isinstance(value, dict):
            raise IdentityConfigError(
                f"{self._key(name)} must map nicknames to a formal name or a list of them"
            )
        result = {}
        for nickname, formal in value.items():
            formals = [formal] if isinstance(formal, str) else formal
            if (
                not isinstance(nickname, str)
                or not isinstance(formals, list)
                or not all(isinstance(f, str) and f.strip() for f in formals)
            ):
                raise IdentityConfigError(
                    f"{self._key(name)}.{nickname}: expected a formal name or a list of them, got {formal!r}"
                )
            result[nickname.strip().lower()] = tuple(f.strip().lower() for f in formals)
        return result

    def names(self, name: str, allowed: tuple[str, ...], allow_empty: bool = False) -> tuple[str, ...]:
        value = self._get(name)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise IdentityConfigError(f"{self._key(name)} must be a list of names")
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise IdentityConfigError(f"{self._key(name)}: unknown {unknown}; allowed: {list(allowed)}")
        if not value and not allow_empty:
            raise IdentityConfigError(f"{self._key(name)} must not be empty")
        return tuple(value)

    def rules(self, name: str) -> tuple[str | tuple[str, ...], ...]:
        value = self._get(name)
        if not isinstance(value, list) or not value:
            raise IdentityConfigError(f"{self._key(name)} must be a non-empty list of rules")
        rules: list[str | tuple[str, ...]] = []
        for i, rule in enumerate(value):
            where = f"{self._key(name)}[{i}]"
            if isinstance(rule, str) and rule.strip():
                rules.append(rule)
            elif isinstance(rule, list) and rule and all(isinstance(c, str) for c in rule):
                unknown = [c for c in rule if c not in BLOCKING_COLUMNS]
                if unknown:
                    raise IdentityConfigError(
                        f"{where}: unknown columns {unknown}; allowed: {list(BLOCKING_COLUMNS)}"
                    )
                rules.append(tuple(rule))
            else:
                raise IdentityConfigError(
                    f"{where} must be a list of column names or a SQL condition string, got {rule!r}"
                )
        return tuple(rules)

    def key_prefix(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not value.isalpha() or not value.isupper():
            raise IdentityConfigError(f"{self._key(name)} must be upper-case letters, got {value!r}")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is not None and not isinstance(value, str):
            raise IdentityConfigError(f"{self._key(name)} must be a string or null, got {value!r}")
        return value


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
