"""Segment scheme: axes -> ordered rules -> 3 to 7 action segments with playbooks.

The scheme (`config/segment_scheme.yaml`) is a governance artefact marketing signs off,
so it is validated strictly when the code location loads: an unknown field, axis, value
or segment fails with the file, the line and the reason, before any run.

Its version is `<declared version>+<content hash>`: the declared number is what people
talk about, the hash makes sure an edit that forgot the bump is still told apart. The
changelog gets one row per distinct content, with a readable diff against the previous
one; re-running with an unchanged scheme adds nothing.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.config import (
    ConfigError,
    LocatedDict,
    Section,
    load_located_yaml,
)
from segmentation_platform.core.config._paths import CONFIG_DIR

SCHEME_PATH = CONFIG_DIR / "segment_scheme.yaml"
LOGIC_VERSION = "1"
SOURCE_TABLES = {
    "features": "features.customer_features",
    "rfm": "models.rfm_scores",
    "clv": "models.clv_scores",
    "churn": "models.churn_scores",
    "clusters": "models.behaviour_clusters",
}
AXIS_METHODS = ("category", "percentile", "threshold")
MIN_SEGMENTS, MAX_SEGMENTS = 3, 7
RESERVED_COLUMNS = ("customer_key", "snapshot_date", "action_segment", "rule", "scheme_version")
PLAYBOOK_FIELDS = (
    "objective",
    "recommended_action",
    "offer",
    "channel",
    "contact_frequency_cap",
    "owner",
    "approved_usage",
)
PROFILE_METRICS = ("revenue", "margin", "cltv", "churn_probability")
CHANGELOG_TABLE = "segments.changelog"
CHANGELOG_COLUMNS = {
    "change_number": "INTEGER",
    "scheme_version": "VARCHAR",
    "declared_version": "INTEGER",
    "content_hash": "VARCHAR",
    "scheme_date": "DATE",
    "author": "VARCHAR",
    "recorded_at": "TIMESTAMP",
    "previous_version": "VARCHAR",
    "change_summary": "VARCHAR",
    "scheme_json": "VARCHAR",
}
PROFILE_COLUMNS = {
    "snapshot_date": "DATE",
    "scheme_version": "VARCHAR",
    "action_segment": "VARCHAR",
    "segment_order": "INTEGER",
    "customers": "BIGINT",
    "share": "DOUBLE",
    "revenue": "DOUBLE",
    "revenue_share": "DOUBLE",
    "margin": "DOUBLE",
    "mean_cltv": "DOUBLE",
    "mean_churn_probability": "DOUBLE",
    "top_features": "VARCHAR",
    "axis_mix": "VARCHAR",
    "description": "VARCHAR",
    "objective": "VARCHAR",
    "recommended_action": "VARCHAR",
    "offer": "VARCHAR",
    "channel": "VARCHAR",
    "contact_frequency_cap": "VARCHAR",
    "owner": "VARCHAR",
    "approved_usage": "VARCHAR",
}


class SchemeError(ConfigError):
    """The segment scheme is invalid: `<file>:<line>: <reason>`."""


# --------------------------------------------------------------------------------------------
# The scheme
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bin:
    name: str
    minimum: float | None  # None: the last bin, takes the rest


@dataclass(frozen=True)
class Axis:
    name: str
    source: str
    column: str
    method: str
    description: str = ""
    values: tuple[str, ...] = ()  # declared values of a category axis (empty: any)
    bins: tuple[Bin, ...] = ()
    missing: str = "unknown"
    line: int = 0

    @property
    def labels(self) -> tuple[str, ...]:
        """Every value a rule may name, or () when any value goes."""
        if self.method == "category":
            return (*self.values, self.missing) if self.values else ()
        return (*(b.name for b in self.bins), self.missing)

    def compute(self, values: pd.Series) -> np.ndarray:
        """The axis label of every row; rows without a value get `missing`."""
        out = np.full(len(values), self.missing, dtype=object)
        present = values.notna().to_numpy()
        if self.method == "category":
            raw = values[present]
            if pd.api.types.is_float_dtype(raw) and (raw % 1 == 0).all():
                raw = raw.astype(np.int64)
            out[present] = raw.astype(str).to_numpy()
            return out
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        present = numbers.notna().to_numpy()
        measure = (
            numbers.rank(pct=True).to_numpy() * 100 if self.method == "percentile" else numbers.to_numpy()
        )
        open_rows = present.copy()
        for bin_ in self.bins:
            if bin_.minimum is None:
                hit = open_rows
            elif self.method == "percentile":
                hit = open_rows & (measure > bin_.minimum)
            else:
                hit = open_rows & (measure >= bin_.minimum)
            out[hit] = bin_.name
            open_rows = open_rows & ~hit
        return out


@dataclass(frozen=True)
class FrequencyCap:
    max_contacts: int
    per_days: int

    def __str__(self) -> str:
        return f"at most {self.max_contacts} contact{'s' if self.max_contacts != 1 else ''} per {self.per_days} days"


@dataclass(frozen=True)
class Playbook:
    objective: str
    recommended_action: str
    offer: str
    channel: str
    contact_frequency_cap: FrequencyCap
    owner: str
    approved_usage: tuple[str, ...]

    def as_columns(self) -> dict[str, str]:
        return {
            "objective": self.objective,
            "recommended_action": self.recommended_action,
            "offer": self.offer,
            "channel": self.channel,
            "contact_frequency_cap": str(self.contact_frequency_cap),
            "owner": self.owner,
            "approved_usage": ", ".join(self.approved_usage),
        }


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    playbook: Playbook
    line: int = 0


@dataclass(frozen=True)
class Rule:
    name: str
    segment: str
    conditions: tuple[tuple[str, tuple[str, ...]], ...]
    line: int = 0

    @property
    def is_catch_all(self) -> bool:
        return not self.conditions


@dataclass(frozen=True)
class ProfileSource:
    source: str
    column: str


@dataclass(frozen=True)
class SegmentScheme:
    declared_version: int
    author: str
    date: date
    description: str
    axes: tuple[Axis, ...]
    segments: tuple[Segment, ...]
    rules: tuple[Rule, ...]
    profile: tuple[tuple[str, ProfileSource], ...]
    content_hash: str
    canonical_json: str
    path: str = ""

    @property
    def version(self) -> str:
        return f"{self.declared_version}+{self.content_hash[:8]}"

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]

    def axis(self, name: str) -> Axis:
        return next(a for a in self.axes if a.name == name)

    def segment(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)

    def profile_source(self, metric: str) -> ProfileSource | None:
        return dict(self.profile).get(metric)

    def columns_needed(self) -> dict[str, list[str]]:
        """source -> the columns assignment and profiles read from it."""
        needed: dict[str, list[str]] = {source: [] for source in SOURCE_TABLES}
        for axis in self.axes:
            needed[axis.source].append(axis.column)
        for _, where in self.profile:
            needed[where.source].append(where.column)
        return {source: list(dict.fromkeys(columns)) for source, columns in needed.items() if columns}


def load_scheme(path: Path | str = SCHEME_PATH) -> SegmentScheme:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemeError(path, None, f"cannot read segment scheme ({exc.strerror})") from None
    return parse_scheme(text, path)


def parse_scheme(text: str, path: Path | str = "<segment scheme>") -> SegmentScheme:
    try:
        data = load_located_yaml(text, path)
        return _parse(data, path)
    except SchemeError:
        raise
    except ConfigError as exc:
        raise SchemeError(exc.file, exc.line, exc.reason) from None


def _parse(data: Any, path) -> SegmentScheme:
    top = Section(data, path, "")
    top.only(
        ["version", "author", "date", "description", "axes", "segments", "rules", "profile"],
        required=["version", "author", "date", "axes", "segments", "rules"],
    )
    axes = _parse_axes(top.section("axes"))
    segments = _parse_segments(top.section("segments"))
    rules = _parse_rules(top, {a.name: a for a in axes}, {s.name for s in segments})
    used = {rule.segment for rule in rules}
    for segment in segments:
        if segment.name not in used:
            raise SchemeError(path, segment.line, f"segment {segment.name!r} is assigned by no rule")
    profile = _parse_profile(top.section("profile")) if top.has("profile") else ()
    canonical = _canonical(data)
    canonical_json = json.dumps(canonical, sort_keys=True, ensure_ascii=False)
    return SegmentScheme(
        declared_version=top.number("version", integer=True, low=1),
        author=top.text("author"),
        date=top.day("date"),
        description=str(top.data.get("description") or "").strip(),
        axes=axes,
        segments=segments,
        rules=rules,
        profile=profile,
        content_hash=hashlib.sha256(canonical_json.encode()).hexdigest(),
        canonical_json=canonical_json,
        path=str(path),
    )


def _parse_axes(section: Section) -> tuple[Axis, ...]:
    if not section.data:
        raise section.error(None, "axes must define at least one axis")
    axes = []
    for name, _ in section.items():
        if name in RESERVED_COLUMNS or not name.replace("_", "").isalnum():
            raise section.error(
                name, f"axis name {name!r} is reserved or not a plain name (letters, digits, _)"
            )
        axis = section.section(name)
        axis.only(
            ["description", "source", "column", "method", "values", "bins", "missing"],
            required=["source", "column", "method"],
        )
        method = axis.choice("method", AXIS_METHODS)
        source = axis.choice("source", list(SOURCE_TABLES))
        values, bins = (), ()
        if method == "category":
            if axis.has("bins"):
                raise axis.error("bins", f"axis {name}: a category axis takes values, not bins")
            if axis.has("values"):
                values = axis.words("values")
                _no_repeats(axis, "values", values)
        else:
            if axis.has("values"):
                raise axis.error("values", f"axis {name}: a {method} axis takes bins, not values")
            bins = _parse_bins(axis, method)
        missing = axis.text("missing", "unknown")
        axes.append(
            Axis(
                name=name,
                source=source,
                column=axis.text("column"),
                method=method,
                description=str(axis.data.get("description") or "").strip(),
                values=values,
                bins=bins,
                missing=missing,
                line=section.line_of(name),
            )
        )
        labels = axes[-1].labels
        if labels and labels.count(missing) > 1:
            raise axis.error("missing", f"axis {name}: missing label {missing!r} is also one of its values")
    return tuple(axes)


def _parse_bins(axis: Section, method: str) -> tuple[Bin, ...]:
    items = axis.data.get("bins")
    minimum_key = "min_percentile" if method == "percentile" else "min"
    if not isinstance(items, list) or len(items) < 2:
        raise axis.error(
            "bins" if axis.has("bins") else None, f"{axis.path}.bins must list at least two bins"
        )
    bins, previous = [], None
    for index, item in enumerate(items):
        bin_ = Section(item, axis.file, f"{axis.path}.bins[{index}]", items.line_of(index))
        bin_.only(["name", minimum_key], required=["name"])
        last = index == len(items) - 1
        if last and bin_.has(minimum_key):
            raise bin_.error(minimum_key, f"the last bin takes the rest and has no {minimum_key}")
        if not last and not bin_.has(minimum_key):
            raise bin_.error(None, f"every bin but the last needs {minimum_key}")
        minimum = None
        if not last:
            minimum = bin_.number(minimum_key, **({"low": 0, "high": 100} if method == "percentile" else {}))
            if previous is not None and minimum >= previous:
                raise bin_.error(minimum_key, f"bins must be listed highest {minimum_key} first")
            previous = minimum
        bins.append(Bin(bin_.text("name"), minimum))
    _no_repeats(axis, "bins", [b.name for b in bins])
    return tuple(bins)


def _no_repeats(section: Section, key: str, names) -> None:
    names = list(names)
    for index, name in enumerate(names):
        if name in names[:index]:
            raise section.error(key, f"{section.key(key)} lists {name!r} twice")


def _parse_segments(section: Section) -> tuple[Segment, ...]:
    count = len(section.data)
    if not MIN_SEGMENTS <= count <= MAX_SEGMENTS:
        raise section.error(
            None, f"a scheme has {MIN_SEGMENTS} to {MAX_SEGMENTS} action segments, found {count}"
        )
    segments = []
    for name, _ in section.items():
        if not name.replace("_", "").isalnum():
            raise section.error(name, f"segment name {name!r} must be letters, digits and _")
        segment = section.section(name).only(["description", "playbook"], required=["playbook"])
        book = segment.section("playbook").only(PLAYBOOK_FIELDS, required=PLAYBOOK_FIELDS)
        cap = book.section("contact_frequency_cap").only(
            ["max_contacts", "per_days"], ["max_contacts", "per_days"]
        )
        playbook = Playbook(
            objective=book.text("objective"),
            recommended_action=book.text("recommended_action"),
            offer=book.text("offer"),
            channel=book.text("channel"),
            contact_frequency_cap=FrequencyCap(
                cap.number("max_contacts", integer=True, low=0), cap.number("per_days", integer=True, low=1)
            ),
            owner=book.text("owner"),
            approved_usage=book.words("approved_usage"),
        )
        segments.append(
            Segment(name, str(segment.data.get("description") or "").strip(), playbook, section.line_of(name))
        )
    return tuple(segments)


def _parse_rules(top: Section, axes: dict[str, Axis], segments: set[str]) -> tuple[Rule, ...]:
    items = top.data["rules"]
    if not isinstance(items, list) or not items:
        raise top.error("rules", "rules must be a non-empty list")
    rules: list[Rule] = []
    for index, item in enumerate(items):
        rule = Section(item, top.file, f"rules[{index}]", items.line_of(index))
        rule.only(["name", "segment", "when", "description"], required=["name", "segment", "when"])
        name = rule.text("name", word=True)
        if any(r.name == name for r in rules):
            raise rule.error("name", f"rule name {name!r} is used twice")
        segment = rule.text("segment")
        if segment not in segments:
            raise rule.error(
                "segment", f"rule {name}: unknown segment {segment!r}; defined: {', '.join(sorted(segments))}"
            )
        when = rule.data["when"]
        if when is None:
            when = LocatedDict()
        conditions_section = Section(when, top.file, f"rules[{index}].when", rule.line_of("when"))
        conditions = []
        for axis_name in conditions_section.data:
            if axis_name not in axes:
                raise conditions_section.error(
                    axis_name, f"rule {name}: unknown axis {axis_name!r}; defined: {', '.join(axes)}"
                )
            wanted = conditions_section.words(axis_name)
            allowed = axes[axis_name].labels
            unknown = [v for v in wanted if allowed and v not in allowed]
            if unknown:
                raise conditions_section.error(
                    axis_name,
                    f"rule {name}: axis {axis_name} has no value {', '.join(map(repr, unknown))}; "
                    f"its values: {', '.join(allowed)}",
                )
            conditions.append((axis_name, wanted))
        parsed = Rule(name, segment, tuple(conditions), rule.line)
        if rules and rules[-1].is_catch_all:
            raise rule.error(
                None, f"rule {name} can never fire: rule {rules[-1].name} before it catches everyone"
            )
        rules.append(parsed)
    if not rules[-1].is_catch_all:
        raise SchemeError(
            top.file,
            rules[-1].line,
            f"the last rule ({rules[-1].name}) must catch everyone (when: {{}}) so every customer gets a segment",
        )
    return tuple(rules)


def _parse_profile(section: Section) -> tuple[tuple[str, ProfileSource], ...]:
    section.only(PROFILE_METRICS)
    out = []
    for metric, value in section.items():
        source, _, column = str(value).partition(".")
        if source not in SOURCE_TABLES or not column:
            raise section.error(
                metric,
                f"profile.{metric} must read source.column with source one of {', '.join(SOURCE_TABLES)}",
            )
        out.append((metric, ProfileSource(source, column)))
    return tuple(out)


def _canonical(value: Any) -> Any:
    """Plain JSON-able content (no line marks, dates as ISO text): what the hash covers."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------------------------
# Changelog
# --------------------------------------------------------------------------------------------


def changelog_entry(scheme: SegmentScheme, latest: dict | None, recorded_at: datetime) -> dict | None:
    """The changelog row this scheme adds after `latest` (the newest row), or None if unchanged."""
    if latest is not None and latest.get("content_hash") == scheme.content_hash:
        return None
    new = json.loads(scheme.canonical_json)
    if latest is None:
        summary = ["initial version"]
    else:
        summary = []
        if (
            latest.get("declared_version") is not None
            and int(latest["declared_version"]) >= scheme.declared_version
        ):
            summary.append(
                f"note: declared version {scheme.declared_version} was not bumped (previous "
                f"{latest['declared_version']}); the content hash tells this version apart"
            )
        summary += diff_schemes(json.loads(latest["scheme_json"]), new) or ["formatting only"]
    return {
        "change_number": int(latest["change_number"]) + 1 if latest else 1,
        "scheme_version": scheme.version,
        "declared_version": scheme.declared_version,
        "content_hash": scheme.content_hash,
        "scheme_date": scheme.date,
        "author": scheme.author,
        "recorded_at": recorded_at,
        "previous_version": latest.get("scheme_version") if latest else None,
        "change_summary": "\n".join(summary),
        "scheme_json": scheme.canonical_json,
    }


def latest_change(conn) -> dict | None:
    """The newest changelog row, or None before the first."""
    if not warehouse.table_exists(conn, CHANGELOG_TABLE):
        return None
    rows = conn.execute(
        f"SELECT * FROM {warehouse.table_ref(CHANGELOG_TABLE)} ORDER BY change_number DESC LIMIT 1"
    ).df()
    return None if rows.empty else rows.iloc[0].to_dict()


def record_scheme(conn, scheme: SegmentScheme, recorded_at: datetime) -> dict | None:
    """Append the scheme to `segments.changelog` unless it is already the latest entry."""
    warehouse.ensure_table(conn, CHANGELOG_TABLE, CHANGELOG_COLUMNS)
    entry = changelog_entry(scheme, latest_change(conn), recorded_at)
    if entry is not None:
        conn.register("_changelog_row", pd.DataFrame([entry]))
        try:
            conn.execute(
                f"INSERT INTO {warehouse.table_ref(CHANGELOG_TABLE)} BY NAME SELECT * FROM _changelog_row"
            )
        finally:
            conn.unregister("_changelog_row")
    return entry


def diff_schemes(old: dict, new: dict) -> list[str]:
    """One readable line per changed setting: `changed rules[x].when.risk_tier: [high] -> [high, medium]`."""
    before, after = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(before.keys() | after.keys(), key=_path_order):
        if key not in after:
            lines.append(f"removed {key} (was {_show(before[key])})")
        elif key not in before:
            lines.append(f"added {key} = {_show(after[key])}")
        elif before[key] != after[key]:
            lines.append(f"changed {key}: {_show(before[key])} -> {_show(after[key])}")
    old_order = [r.get("name") for r in old.get("rules", []) if isinstance(r, dict)]
    new_order = [r.get("name") for r in new.get("rules", []) if isinstance(r, dict)]
    common_old = [n for n in old_order if n in new_order]
    common_new = [n for n in new_order if n in old_order]
    if common_old != common_new:
        lines.append(f"reordered rules: {', '.join(old_order)} -> {', '.join(new_order)}")
    return lines


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by path; lists of named mappings (rules, bins) are keyed by name, not position."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        out = {}
        for item in value:
            rest = {k: v for k, v in item.items() if k != "name"}
            leaves = _flatten(rest, f"{prefix}[{item['name']}]")
            out |= leaves or {f"{prefix}[{item['name']}]": {}}
        return out
    return {prefix: value}


def _path_order(path: str) -> tuple:
    head = path.split(".")[0].split("[")[0]
    order = ["version", "author", "date", "description", "axes", "segments", "rules", "profile"]
    return (order.index(head) if head in order else len(order), path)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------
# Assignment and profiles
# --------------------------------------------------------------------------------------------


class SchemeDataError(ValueError):
    """A source lacks a column the scheme reads; names the axis and its line."""


@dataclass
class Assignment:
    assignments: pd.DataFrame  # customer_key, snapshot_date, <axes>, action_segment, rule, scheme_version
    notes: list[str] = field(default_factory=list)


class _Lookup:
    """Source columns aligned to the customers being assigned: one hash lookup per source,
    not a merge per column (at 1M customers that is the difference between 1 s and 10 s)."""

    def __init__(self, scheme: SegmentScheme, sources: dict, keys: pd.Series, notes: list[str]):
        self.scheme, self.sources, self.keys, self.notes = scheme, sources, keys, notes
        self.positions: dict[str, np.ndarray] = {}

    def column(self, source: str, column: str, what: str) -> pd.Series:
        frame = self.sources.get(source)
        if frame is None:
            self.notes.append(
                f"{SOURCE_TABLES[source]} is not available: {what} is missing for every customer"
            )
            return pd.Series([None] * len(self.keys), index=self.keys.index, dtype=object)
        if column not in frame.columns:
            raise SchemeDataError(
                f"{self.scheme.path}: {what} reads {source}.{column}, but {SOURCE_TABLES[source]} has no "
                f"column {column!r} (it has: {', '.join(map(str, frame.columns))})"
            )
        if source not in self.positions:
            first = ~frame["customer_key"].duplicated().to_numpy()
            if not first.all():
                self.notes.append(f"{SOURCE_TABLES[source]} repeats customers; the first row of each is used")
            found = pd.Index(frame["customer_key"].to_numpy()[first]).get_indexer(self.keys.to_numpy())
            rows = np.flatnonzero(first)
            self.positions[source] = np.where(found >= 0, rows[np.maximum(found, 0)] if len(rows) else -1, -1)
        # reindex by position: -1 is no row, so it reads as missing, keeping the column's dtype
        values = frame[column].reset_index(drop=True).reindex(self.positions[source])
        return values.set_axis(self.keys.index)


def assign_segments(
    scheme: SegmentScheme, sources: dict[str, pd.DataFrame | None], snapshot_date
) -> Assignment:
    """Every customer of the features snapshot gets its axis values and exactly one segment.

    `sources` maps source name (features, rfm, clv, churn, clusters) to that snapshot's
    rows (customer_key plus the columns the scheme reads); None = not available yet.
    """
    base = sources.get("features")
    if base is None:
        raise SchemeDataError("assignment needs the features snapshot: it defines who the customers are")
    first = ~base["customer_key"].duplicated().to_numpy()
    keys = pd.Series(base["customer_key"].to_numpy()[first], name="customer_key")
    notes: list[str] = []
    n = len(keys)
    out = {
        "customer_key": keys.to_numpy(),
        "snapshot_date": np.full(n, pd.Timestamp(snapshot_date).to_datetime64()),
    }
    lookup = _Lookup(scheme, sources, keys, notes)
    lookup.positions["features"] = np.flatnonzero(first)  # the customers are the features' rows
    for axis in scheme.axes:
        values = lookup.column(axis.source, axis.column, f"axis {axis.name} (line {axis.line})")
        out[axis.name] = axis.compute(values)
        if axis.method == "category" and axis.values:
            undeclared = sorted(set(out[axis.name]) - set(axis.labels))
            if undeclared:
                notes.append(
                    f"axis {axis.name}: values not declared in the scheme: {', '.join(undeclared[:5])}"
                )
    segment = np.full(n, None, dtype=object)
    fired = np.full(n, None, dtype=object)
    open_rows = np.ones(n, dtype=bool)
    # Each axis factorized once; a condition is then an integer lookup, not a string scan.
    codes = {axis.name: pd.factorize(out[axis.name]) for axis in scheme.axes}
    for rule in scheme.rules:
        hit = open_rows.copy()
        for axis_name, wanted in rule.conditions:
            axis_codes, uniques = codes[axis_name]
            hit &= np.isin(axis_codes, np.flatnonzero(pd.Index(uniques).isin(wanted)))
        segment[hit], fired[hit] = rule.segment, rule.name
        open_rows &= ~hit
    out |= {"action_segment": segment, "rule": fired, "scheme_version": scheme.version}
    return Assignment(pd.DataFrame(out), notes)


def assignment_columns(scheme: SegmentScheme) -> dict[str, str]:
    return (
        {"customer_key": "VARCHAR", "snapshot_date": "DATE"}
        | {axis.name: "VARCHAR" for axis in scheme.axes}
        | {"action_segment": "VARCHAR", "rule": "VARCHAR", "scheme_version": "VARCHAR"}
    )


def segment_profiles(
    scheme: SegmentScheme, assignments: pd.DataFrame, sources: dict[str, pd.DataFrame | None], snapshot_date
) -> pd.DataFrame:
    """One row per defined segment (empty ones too): size, economics, what sets it apart, playbook."""
    keys = assignments["customer_key"].reset_index(drop=True)
    segment = assignments["action_segment"].to_numpy()
    lookup = _Lookup(scheme, sources, keys, [])
    metrics = pd.DataFrame(index=keys.index)
    for metric in PROFILE_METRICS:
        where = scheme.profile_source(metric)
        frame = sources.get(where.source) if where else None
        if frame is None or where.column not in frame.columns:
            metrics[metric] = np.nan
        else:
            values = lookup.column(where.source, where.column, f"profile.{metric}")
            metrics[metric] = pd.to_numeric(values, errors="coerce").astype(float)
    grouped = metrics.groupby(segment)
    sums, means, counts = grouped.sum(min_count=1), grouped.mean(), grouped.size()
    total_customers = len(keys)
    total_revenue = metrics["revenue"].sum(min_count=1)
    describe = _describable(sources.get("features"), lookup)
    segment_means = describe.groupby(segment).mean()
    base_mean, base_std = describe.mean(), describe.std().replace(0, np.nan)
    axis_mix = {
        axis.name: assignments.groupby("action_segment")[axis.name].value_counts(normalize=True)
        for axis in scheme.axes
    }
    rows = []
    for order, definition in enumerate(scheme.segments):
        name = definition.name
        count = int(counts.get(name, 0))
        top, mix = [], {}
        if count:
            z = ((segment_means.loc[name] - base_mean) / base_std).dropna()
            for column in z.abs().sort_values(ascending=False).index[:5]:
                top.append(
                    {
                        "feature": column,
                        "z": round(float(z[column]), 3),
                        "segment_mean": round(float(segment_means.loc[name, column]), 4),
                        "base_mean": round(float(base_mean[column]), 4),
                    }
                )
            for axis, shares in axis_mix.items():
                mix[axis] = {str(k): round(float(v), 4) for k, v in shares.loc[name].head(3).items()}
        revenue = float(sums.loc[name, "revenue"]) if count else np.nan
        rows.append(
            {
                "snapshot_date": pd.Timestamp(snapshot_date),
                "scheme_version": scheme.version,
                "action_segment": name,
                "segment_order": order,
                "customers": count,
                "share": count / total_customers if total_customers else 0.0,
                "revenue": revenue,
                "revenue_share": revenue / total_revenue if count and total_revenue else np.nan,
                "margin": float(sums.loc[name, "margin"]) if count else np.nan,
                "mean_cltv": float(means.loc[name, "cltv"]) if count else np.nan,
                "mean_churn_probability": float(means.loc[name, "churn_probability"]) if count else np.nan,
                "top_features": json.dumps(top),
                "axis_mix": json.dumps(mix),
                "description": definition.description,
                **definition.playbook.as_columns(),
            }
        )
    return pd.DataFrame(rows, columns=list(PROFILE_COLUMNS))


def _describable(features: pd.DataFrame | None, lookup: _Lookup) -> pd.DataFrame:
    """Numeric feature columns aligned to the assignment rows, for "what sets a segment apart"."""
    if features is None:
        return pd.DataFrame(index=lookup.keys.index)
    numeric = [
        c
        for c in features.columns
        if c not in ("customer_key", "snapshot_date")
        and (pd.api.types.is_numeric_dtype(features[c]) or pd.api.types.is_bool_dtype(features[c]))
    ]
    return pd.DataFrame(
        {
            c: pd.to_numeric(lookup.column("features", c, "profile"), errors="coerce").astype(float)
            for c in numeric
        }
    )
