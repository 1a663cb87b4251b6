"""The scheme changelog: one `segments.changelog` row per distinct scheme content, with a
readable diff against the previous one; an unchanged scheme adds nothing."""

import json
from datetime import datetime
from typing import Any

import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.segments._scheme import SegmentScheme
from segmentation_platform.core.segments._tables import SEGMENT_CHANGELOG_SCHEMA
from segmentation_platform.core.warehouse import tables


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
    if not warehouse.table_exists(conn, tables.SEGMENT_CHANGELOG):
        return None
    rows = conn.execute(
        f"SELECT * FROM {warehouse.table_ref(tables.SEGMENT_CHANGELOG)} ORDER BY change_number DESC LIMIT 1"
    ).df()
    return None if rows.empty else rows.iloc[0].to_dict()


def record_scheme(conn, scheme: SegmentScheme, recorded_at: datetime) -> dict | None:
    """Append the scheme to `segments.changelog` unless it is already the latest entry."""
    warehouse.ensure_table(conn, tables.SEGMENT_CHANGELOG, SEGMENT_CHANGELOG_SCHEMA.sql_columns)
    entry = changelog_entry(scheme, latest_change(conn), recorded_at)
    if entry is not None:
        conn.register("_changelog_row", pd.DataFrame([entry]))
        try:
            conn.execute(
                f"INSERT INTO {warehouse.table_ref(tables.SEGMENT_CHANGELOG)} BY NAME SELECT * FROM _changelog_row"
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
