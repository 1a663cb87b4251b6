"""Reading the segment scheme YAML strictly: unknown fields, axes, values and segments fail
with the file, the line and the reason (one `ConfigError`), before any run."""

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from segmentation_platform.core.config import (
    ConfigError,
    LocatedDict,
    Section,
    load_located_yaml,
    read_config,
)
from segmentation_platform.core.segments._scheme import (
    AXIS_METHODS,
    MAX_SEGMENTS,
    MIN_SEGMENTS,
    PLAYBOOK_FIELDS,
    PROFILE_METRICS,
    RESERVED_COLUMNS,
    SCHEME_PATH,
    SOURCE_TABLES,
    Axis,
    Bin,
    FrequencyCap,
    Playbook,
    ProfileSource,
    Rule,
    Segment,
    SegmentScheme,
)


def load_scheme(path: Path | str = SCHEME_PATH) -> SegmentScheme:
    """Parse and validate a scheme file; every mistake is a `ConfigError` `file:line: reason`."""
    top = read_config(path)
    return _parse(top.data, top.file)


def parse_scheme(text: str, path: Path | str = "<segment scheme>") -> SegmentScheme:
    """The same from YAML text (`path` only names it in errors)."""
    return _parse(load_located_yaml(text, path), path)


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
            raise ConfigError(path, segment.line, f"segment {segment.name!r} is assigned by no rule")
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
        raise ConfigError(
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
