"""`destinations.yaml`: where segments go, who may receive them, and who is held out.

The file is edited by hand by marketing operations, and a mistake in it can mail people
who opted out; every problem therefore fails at load with `<file>:<line>: <key>: <reason>`
before any run, and the rules that protect people (no raw PII to ad platforms, consent
for every marketing destination) are enforced here, not left to reviewers.
"""

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segmentation_platform.core.config import ConfigError
from segmentation_platform.core.config._paths import CONFIG_DIR

CONFIG_PATH = CONFIG_DIR / "destinations.yaml"
CONFIG_PATH_ENV = "SEGMENTATION_DESTINATIONS_CONFIG"

DESTINATION_TYPES = ("crm_upsert_csv", "map_list", "cdp_traits_jsonl", "ad_audience", "webhook")
PURPOSES = ("marketing", "service")
SYNC_MODES = ("full", "delta")
# Which consent flags a marketing destination needs: `any` = email or SMS consent.
CONSENT_RULES = ("email", "sms", "any", "all")

RAW_PII_FIELDS = frozenset({"email", "phone", "first_name", "last_name"})
HASHED_FIELDS = frozenset({"email_sha256", "phone_sha256"})
CONTACT_FIELDS = frozenset({"email", "phone", "email_sha256", "phone_sha256"})
# Fields a destination may export; `playbook_<column>` adds any column of segments.profiles.
FIELD_CATALOG = {
    "customer_key": "Stable customer key (identity resolution)",
    "snapshot_date": "Snapshot the segment was assigned at",
    "scheme_version": "Version of the segment scheme",
    "action_segment": "Action segment the customer is in",
    "rule": "Scheme rule that assigned the segment",
    "value_tier": "Value tier",
    "lifecycle_stage": "Lifecycle stage",
    "risk_tier": "Churn risk tier",
    "rfm_segment": "RFM segment",
    "behaviour_cluster": "Behavioural cluster",
    "cltv": "Predicted customer lifetime value",
    "p_alive": "Probability the customer is still active",
    "churn_probability": "Churn propensity",
    "r_score": "RFM recency score",
    "f_score": "RFM frequency score",
    "m_score": "RFM monetary score",
    "email": "Email address (raw PII)",
    "phone": "Phone in E.164 (raw PII)",
    "first_name": "First name (raw PII)",
    "last_name": "Last name (raw PII)",
    "email_sha256": "SHA-256 of the trimmed, lower-cased email",
    "phone_sha256": "SHA-256 of the E.164 phone",
    "email_consent": "Consent to marketing email",
    "sms_consent": "Consent to marketing SMS",
}
PLAYBOOK_PREFIX = "playbook_"
AD_AUDIENCE_FIELDS = frozenset(HASHED_FIELDS | {"action_segment", "snapshot_date", "scheme_version"})
FILE_FORMATS = {
    "crm_upsert_csv": ("csv",),
    "map_list": ("csv", "jsonl"),
    "cdp_traits_jsonl": ("jsonl",),
    "ad_audience": ("csv",),
    "webhook": ("jsonl",),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class DestinationsConfigError(ConfigError):
    """`<file>:<line>: <key>: <reason>` for destinations.yaml (the platform's ConfigError)."""

    def __init__(self, path: Path | str, line: int | None, key: str, reason: str):
        super().__init__(path, line, reason, key=key or "(top level)")


@dataclass(frozen=True)
class Experiment:
    """A holdout experiment: customers whose salted hash falls below `share` get no activation."""

    name: str
    salt: str
    share: float
    starts: dt.date
    ends: dt.date | None
    # None = every action segment.
    segments: tuple[str, ...] | None

    def active_on(self, snapshot: dt.date) -> bool:
        return self.starts <= snapshot and (self.ends is None or snapshot < self.ends)

    def covers(self, segment: str) -> bool:
        return self.segments is None or segment in self.segments


@dataclass(frozen=True)
class WebhookSettings:
    url: str | None
    url_env: str | None
    batch_size: int
    max_attempts: int
    backoff_seconds: float
    max_backoff_seconds: float
    timeout_seconds: float
    auth_token_env: str | None

    def resolved_url(self) -> str | None:
        if self.url:
            return self.url
        return os.environ.get(self.url_env) if self.url_env else None


@dataclass(frozen=True)
class Destination:
    name: str
    type: str
    purpose: str
    enabled: bool
    sync_mode: str
    # None = every action segment.
    segments: tuple[str, ...] | None
    fields: tuple[str, ...]
    format: str
    consent: str | None
    include_holdouts: bool
    retain_exports: int
    # Playbook usage this destination serves (e.g. email, crm, paid_media_retargeting): only
    # segments whose playbook lists it under approved_usage are exported. None = not gated.
    usage: str | None = None
    webhook: WebhookSettings | None = None
    line: int = 0

    @property
    def is_marketing(self) -> bool:
        return self.purpose == "marketing"

    @property
    def contact_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f in CONTACT_FIELDS)


@dataclass(frozen=True)
class ActivationConfig:
    path: Path
    version: int
    suppression_path: Path | None
    experiments: tuple[Experiment, ...]
    destinations: tuple[Destination, ...]
    raw_text: str = field(repr=False, default="")

    @property
    def enabled_destinations(self) -> tuple[Destination, ...]:
        return tuple(d for d in self.destinations if d.enabled)

    def experiment_for(self, segment: str, snapshot: dt.date) -> Experiment | None:
        for experiment in self.experiments:
            if experiment.active_on(snapshot) and experiment.covers(segment):
                return experiment
        return None

    def active_experiments(self, snapshot: dt.date) -> tuple[Experiment, ...]:
        return tuple(e for e in self.experiments if e.active_on(snapshot))


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_PATH_ENV) or CONFIG_PATH)


# --------------------------------------------------------------------------- YAML with lines


class _Located(dict):
    line: int = 0
    key_lines: dict


class _LocatedLoader(yaml.SafeLoader):
    """Keeps the line of every mapping and key so errors can point at them."""


def _construct_located_mapping(loader: _LocatedLoader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    mapping = _Located()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_LocatedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_located_mapping)


class _Section:
    def __init__(self, path: Path, prefix: str, data: _Located):
        self.path, self.prefix, self.data = path, prefix, data

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def line(self, name: str | None = None) -> int:
        if name is not None and name in self.data.key_lines:
            return self.data.key_lines[name]
        return self.data.line

    def error(self, name: str | None, reason: str) -> DestinationsConfigError:
        return DestinationsConfigError(
            self.path, self.line(name), self.key(name) if name else self.prefix, reason
        )

    def only(self, *allowed: str) -> None:
        for name in self.data:
            if name not in allowed:
                raise self.error(str(name), f"unknown key (expected one of: {', '.join(allowed)})")

    def raw(self, name: str, default: Any = ...) -> Any:
        if name not in self.data or self.data[name] is None:
            if default is ...:
                raise self.error(None, f"required key {name!r} is missing")
            return default
        return self.data[name]

    def section(self, name: str, default: Any = ...) -> "_Section | None":
        value = self.raw(name, default)
        if value is default and default is not ...:
            return None
        if not isinstance(value, _Located):
            raise self.error(name, f"expected a mapping, got {_shown(value)}")
        return _Section(self.path, self.key(name), value)

    def string(self, name: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str | None:
        value = self.raw(name, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, f"expected a non-empty string, got {_shown(value)}")
        if choices is not None and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_shown(value)}")
        return value

    def integer(self, name: str, default: Any = ..., minimum: int | None = None) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_shown(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: Any = ..., low: float = 0.0, high: float | None = None) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_shown(value)}")
        if value < low or (high is not None and value > high):
            bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise self.error(name, f"must be {bound}, got {value}")
        return float(value)

    def date(self, name: str, default: Any = ...) -> dt.date | None:
        value = self.raw(name, default)
        if value is None and default is None:
            return None
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise self.error(name, f"expected a date YYYY-MM-DD, got {_shown(value)}")
        return value

    def names(self, name: str, default: Any = ..., allow_all: bool = False) -> tuple[str, ...] | None:
        """A list of names; `all` (when allowed) means no restriction and returns None."""
        value = self.raw(name, default)
        if allow_all and value == "all":
            return None
        if not isinstance(value, list) or not value:
            expected = "`all` or a non-empty list" if allow_all else "a non-empty list"
            raise self.error(name, f"expected {expected}, got {_shown(value)}")
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise self.error(name, f"every entry must be a non-empty string, got {_shown(item)}")
        if len(set(value)) != len(value):
            duplicates = sorted({v for v in value if value.count(v) > 1})
            raise self.error(name, f"listed twice: {', '.join(duplicates)}")
        return tuple(value)


def _shown(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


# --------------------------------------------------------------------------- loading


def load_activation_config(path: Path | str | None = None) -> ActivationConfig:
    """Parse and validate the destinations file; any problem raises DestinationsConfigError."""
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DestinationsConfigError(path, None, "", f"cannot read file ({error.strerror})") from error
    try:
        data = yaml.load(text, Loader=_LocatedLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise DestinationsConfigError(path, line, "", f"not valid YAML ({problem})") from error
    if not isinstance(data, _Located):
        raise DestinationsConfigError(path, 1, "", "expected a mapping with version, destinations, ...")
    root = _Section(path, "", data)
    root.only("version", "suppression", "holdouts", "destinations")
    version = root.integer("version", minimum=1)

    suppression_path = None
    if (suppression := root.section("suppression", None)) is not None:
        suppression.only("path")
        raw_path = os.path.expandvars(suppression.string("path"))
        suppression_path = Path(raw_path) if os.path.isabs(raw_path) else path.parent / raw_path

    experiments: list[Experiment] = []
    if (holdouts := root.section("holdouts", None)) is not None:
        holdouts.only("experiments")
        experiments = _experiments(holdouts)

    entries = root.raw("destinations")
    if not isinstance(entries, list) or not entries:
        raise root.error("destinations", f"expected a non-empty list, got {_shown(entries)}")
    destinations = []
    for index, entry in enumerate(entries):
        key = f"destinations[{index}]"
        if not isinstance(entry, _Located):
            raise DestinationsConfigError(path, data.key_lines["destinations"], key, "expected a mapping")
        destinations.append(_destination(_Section(path, key, entry)))
    names = [d.name for d in destinations]
    for destination in destinations:
        if names.count(destination.name) > 1:
            raise DestinationsConfigError(
                path, destination.line, "destinations", f"destination name {destination.name!r} is used twice"
            )
    return ActivationConfig(
        path=path,
        version=version,
        suppression_path=suppression_path,
        experiments=tuple(experiments),
        destinations=tuple(destinations),
        raw_text=text,
    )


def _experiments(holdouts: _Section) -> list[Experiment]:
    entries = holdouts.raw("experiments")
    if not isinstance(entries, list):
        raise holdouts.error("experiments", f"expected a list, got {_shown(entries)}")
    experiments = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, _Located):
            raise holdouts.error("experiments", f"entry {index} must be a mapping")
        section = _Section(holdouts.path, f"{holdouts.key('experiments')}[{index}]", entry)
        section.only("name", "salt", "share", "starts", "ends", "segments")
        name = section.string("name")
        if not _NAME.match(name):
            raise section.error("name", f"use lower-case letters, digits and _, got {name!r}")
        starts, ends = section.date("starts"), section.date("ends", None)
        if ends is not None and ends <= starts:
            raise section.error("ends", f"must be after starts ({starts}), got {ends}")
        share = section.number("share", low=0.0, high=0.5)
        if share == 0:
            raise section.error("share", "must be above 0 (remove the experiment to stop holding out)")
        experiment = Experiment(
            name=name,
            salt=section.string("salt"),
            share=share,
            starts=starts,
            ends=ends,
            segments=section.names("segments", "all", allow_all=True),
        )
        for other in experiments:
            if other.name == experiment.name:
                raise section.error("name", f"experiment {name!r} is defined twice")
            if _overlap(other, experiment):
                raise section.error(
                    "segments",
                    f"overlaps experiment {other.name!r} in time and segments: "
                    "a customer could be randomized twice",
                )
        experiments.append(experiment)
    return experiments


def _overlap(a: Experiment, b: Experiment) -> bool:
    far = dt.date.max
    in_time = a.starts < (b.ends or far) and b.starts < (a.ends or far)
    in_segments = a.segments is None or b.segments is None or bool(set(a.segments) & set(b.segments))
    return in_time and in_segments


_DESTINATION_KEYS = (
    "name",
    "type",
    "purpose",
    "enabled",
    "sync_mode",
    "segments",
    "fields",
    "format",
    "consent",
    "include_holdouts",
    "retain_exports",
    "usage",
    "url",
    "url_env",
    "auth_token_env",
    "batch_size",
    "max_attempts",
    "backoff_seconds",
    "max_backoff_seconds",
    "timeout_seconds",
)
_WEBHOOK_KEYS = (
    "url",
    "url_env",
    "auth_token_env",
    "batch_size",
    "max_attempts",
    "backoff_seconds",
    "max_backoff_seconds",
    "timeout_seconds",
)


def _destination(section: _Section) -> Destination:
    section.only(*_DESTINATION_KEYS)
    name = section.string("name")
    if not _NAME.match(name):
        raise section.error("name", f"use lower-case letters, digits and _ (it names a folder), got {name!r}")
    section.prefix = f"destinations.{name}"
    type_ = section.string("type", choices=DESTINATION_TYPES)
    # Ad platforms only ever advertise: they cannot be a service destination.
    purpose = section.string("purpose", choices=PURPOSES)
    if type_ == "ad_audience" and purpose != "marketing":
        raise section.error("purpose", "an ad_audience is always marketing")
    consent = section.string("consent", None, choices=CONSENT_RULES)
    if purpose == "marketing" and consent is None:
        raise section.error(
            None, f"marketing destination needs `consent` (one of {', '.join(CONSENT_RULES)})"
        )
    fields = section.names("fields")
    for field_name in fields:
        if field_name not in FIELD_CATALOG and not (
            field_name.startswith(PLAYBOOK_PREFIX) and len(field_name) > len(PLAYBOOK_PREFIX)
        ):
            raise section.error(
                "fields",
                f"unknown field {field_name!r} (known: {', '.join(FIELD_CATALOG)}, or playbook_<profile column>)",
            )
    if type_ == "ad_audience":
        raw_pii = sorted(set(fields) - AD_AUDIENCE_FIELDS)
        if raw_pii:
            raise section.error(
                "fields",
                f"an ad_audience may only carry {', '.join(sorted(AD_AUDIENCE_FIELDS))}; not {', '.join(raw_pii)}",
            )
        if not set(fields) & HASHED_FIELDS:
            raise section.error("fields", "an ad_audience needs email_sha256 or phone_sha256 to match on")
    elif type_ in ("crm_upsert_csv", "cdp_traits_jsonl", "webhook") and "customer_key" not in fields:
        raise section.error("fields", f"a {type_} destination upserts by customer_key: list it in fields")
    formats = FILE_FORMATS[type_]
    file_format = section.string("format", formats[0], choices=formats)
    include_holdouts = section.boolean("include_holdouts", False)
    if include_holdouts and purpose == "marketing":
        raise section.error("include_holdouts", "holdout customers never reach a marketing destination")

    webhook = None
    if type_ == "webhook":
        webhook = WebhookSettings(
            url=section.string("url", None),
            url_env=section.string("url_env", None),
            batch_size=section.integer("batch_size", 500, minimum=1),
            max_attempts=section.integer("max_attempts", 5, minimum=1),
            backoff_seconds=section.number("backoff_seconds", 1.0),
            max_backoff_seconds=section.number("max_backoff_seconds", 60.0),
            timeout_seconds=section.number("timeout_seconds", 30.0, low=0.001),
            auth_token_env=section.string("auth_token_env", None),
        )
        if webhook.url is not None and not re.match(r"^https?://", webhook.url):
            raise section.error("url", f"expected an http:// or https:// URL, got {webhook.url!r}")
    else:
        for key in _WEBHOOK_KEYS:
            if key in section.data:
                raise section.error(key, f"only a webhook destination takes {key!r}")
    enabled = section.boolean("enabled", True)
    if enabled and webhook is not None and webhook.url is None and webhook.url_env is None:
        raise section.error("url", "an enabled webhook needs `url` or `url_env`")
    return Destination(
        name=name,
        type=type_,
        purpose=purpose,
        enabled=enabled,
        sync_mode=section.string("sync_mode", choices=SYNC_MODES),
        segments=section.names("segments", allow_all=True),
        fields=fields,
        format=file_format,
        consent=consent,
        include_holdouts=include_holdouts,
        retain_exports=section.integer("retain_exports", 5, minimum=1),
        usage=section.string("usage", None),
        webhook=webhook,
        line=section.data.line,
    )
