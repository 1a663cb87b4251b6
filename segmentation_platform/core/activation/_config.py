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

from segmentation_platform.core.config import CONFIG_DIR, ConfigError, Section, read_config

CONFIG_PATH = CONFIG_DIR / "destinations.yaml"

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


# --------------------------------------------------------------------------- loading


def load_activation_config(path: Path | str | None = None) -> ActivationConfig:
    """Parse and validate the destinations file; any problem raises ConfigError."""
    path = Path(path) if path is not None else CONFIG_PATH
    root = read_config(path).only(
        ("version", "suppression", "holdouts", "destinations"), required=("version",)
    )
    version = root.number("version", low=1, integer=True)

    suppression_path = None
    if _given(root, "suppression"):
        suppression = root.section("suppression").only(("path",), required=("path",))
        raw_path = os.path.expandvars(suppression.text("path"))
        suppression_path = Path(raw_path) if os.path.isabs(raw_path) else path.parent / raw_path

    experiments: list[Experiment] = []
    if _given(root, "holdouts"):
        experiments = _experiments(root.section("holdouts").only(("experiments",), required=("experiments",)))

    entries = root.data.get("destinations")
    if not isinstance(entries, list) or not entries:
        raise root.error(
            "destinations" if root.has("destinations") else None, "destinations must be a non-empty list"
        )
    destinations = [
        _destination(Section(entry, path, f"destinations[{index}]", entries.line_of(index)))
        for index, entry in enumerate(entries)
    ]
    names = [d.name for d in destinations]
    for destination in destinations:
        if names.count(destination.name) > 1:
            raise ConfigError(path, destination.line, f"destination name {destination.name!r} is used twice")
    return ActivationConfig(
        path=path,
        version=version,
        suppression_path=suppression_path,
        experiments=tuple(experiments),
        destinations=tuple(destinations),
        raw_text=path.read_text(encoding="utf-8"),
    )


def _given(section: Section, name: str) -> bool:
    """A key that is present and not null (YAML `key:` with nothing after it means absent)."""
    return section.data.get(name) is not None


def _optional_text(section: Section, name: str) -> str | None:
    return section.text(name) if _given(section, name) else None


def _names(section: Section, name: str, *, allow_all: bool = False, default=None) -> tuple[str, ...] | None:
    """A list of distinct names; `all` (when allowed) means no restriction and returns None."""
    value = section.data.get(name, default)
    if allow_all and value == "all":
        return None
    expected = "`all` or a non-empty list of names" if allow_all else "a non-empty list of names"
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise section.error(name if section.has(name) else None, f"{section.key(name)} must be {expected}")
    if len(set(value)) != len(value):
        duplicates = sorted({v for v in value if value.count(v) > 1})
        raise section.error(name, f"{section.key(name)} lists {', '.join(duplicates)} twice")
    return tuple(value)


def _experiments(holdouts: Section) -> list[Experiment]:
    entries = holdouts.data["experiments"]
    if not isinstance(entries, list):
        raise holdouts.error("experiments", "holdouts.experiments must be a list")
    experiments = []
    for index, entry in enumerate(entries):
        section = Section(entry, holdouts.file, f"holdouts.experiments[{index}]", entries.line_of(index))
        section.only(
            ("name", "salt", "share", "starts", "ends", "segments"),
            required=("name", "salt", "share", "starts"),
        )
        name = section.text("name")
        if not _NAME.match(name):
            raise section.error("name", f"use lower-case letters, digits and _, got {name!r}")
        starts = section.day("starts")
        ends = section.day("ends") if _given(section, "ends") else None
        if ends is not None and ends <= starts:
            raise section.error("ends", f"must be after starts ({starts}), got {ends}")
        share = float(section.number("share", low=0.0, high=0.5))
        if share == 0:
            raise section.error("share", "must be above 0 (remove the experiment to stop holding out)")
        experiment = Experiment(
            name=name,
            salt=section.text("salt"),
            share=share,
            starts=starts,
            ends=ends,
            segments=_names(section, "segments", allow_all=True, default="all"),
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
    *_WEBHOOK_KEYS,
)


def _destination(section: Section) -> Destination:
    name = section.text("name")
    if not _NAME.match(name):
        raise section.error("name", f"use lower-case letters, digits and _ (it names a folder), got {name!r}")
    section.path = f"destinations.{name}"  # errors name the destination, not its index
    section.only(_DESTINATION_KEYS, required=("type", "purpose", "sync_mode", "segments", "fields"))
    type_ = section.choice("type", DESTINATION_TYPES)
    # Ad platforms only ever advertise: they cannot be a service destination.
    purpose = section.choice("purpose", PURPOSES)
    if type_ == "ad_audience" and purpose != "marketing":
        raise section.error("purpose", "an ad_audience is always marketing")
    consent = section.choice("consent", CONSENT_RULES) if _given(section, "consent") else None
    if purpose == "marketing" and consent is None:
        raise section.error(
            None, f"marketing destination needs `consent` (one of {', '.join(CONSENT_RULES)})"
        )
    fields = _names(section, "fields")
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
    file_format = section.choice("format", formats, default=formats[0])
    include_holdouts = section.flag("include_holdouts", False)
    if include_holdouts and purpose == "marketing":
        raise section.error("include_holdouts", "holdout customers never reach a marketing destination")

    webhook = None
    if type_ == "webhook":
        webhook = WebhookSettings(
            url=_optional_text(section, "url"),
            url_env=_optional_text(section, "url_env"),
            batch_size=section.number("batch_size", 500, low=1, integer=True),
            max_attempts=section.number("max_attempts", 5, low=1, integer=True),
            backoff_seconds=float(section.number("backoff_seconds", 1.0, low=0)),
            max_backoff_seconds=float(section.number("max_backoff_seconds", 60.0, low=0)),
            timeout_seconds=float(section.number("timeout_seconds", 30.0, low=0.001)),
            auth_token_env=_optional_text(section, "auth_token_env"),
        )
        if webhook.url is not None and not re.match(r"^https?://", webhook.url):
            raise section.error("url", f"expected an http:// or https:// URL, got {webhook.url!r}")
    else:
        for key in _WEBHOOK_KEYS:
            if section.has(key):
                raise section.error(key, f"only a webhook destination takes {key!r}")
    enabled = section.flag("enabled", True)
    if enabled and webhook is not None and webhook.url is None and webhook.url_env is None:
        raise section.error("url", "an enabled webhook needs `url` or `url_env`")
    return Destination(
        name=name,
        type=type_,
        purpose=purpose,
        enabled=enabled,
        sync_mode=section.choice("sync_mode", SYNC_MODES),
        segments=_names(section, "segments", allow_all=True),
        fields=fields,
        format=file_format,
        consent=consent,
        include_holdouts=include_holdouts,
        retain_exports=section.number("retain_exports", 5, low=1, integer=True),
        usage=_optional_text(section, "usage"),
        webhook=webhook,
        line=section.line,
    )
