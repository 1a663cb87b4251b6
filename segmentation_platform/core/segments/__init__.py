"""Segments: the versioned scheme (YAML), rule-based assignment to action segments, profiles and the scheme changelog.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.segments._scheme import (
    CHANGELOG_TABLE,
    LOGIC_VERSION,
    MAX_SEGMENTS,
    MIN_SEGMENTS,
    PROFILE_COLUMNS,
    SCHEME_PATH,
    SOURCE_TABLES,
    SchemeDataError,
    SchemeError,
    SegmentScheme,
    assign_segments,
    assignment_columns,
    changelog_entry,
    latest_change,
    load_scheme,
    parse_scheme,
    record_scheme,
    segment_profiles,
)

__all__ = [
    "CHANGELOG_TABLE",
    "LOGIC_VERSION",
    "MAX_SEGMENTS",
    "MIN_SEGMENTS",
    "PROFILE_COLUMNS",
    "SCHEME_PATH",
    "SOURCE_TABLES",
    "SchemeDataError",
    "SchemeError",
    "SegmentScheme",
    "assign_segments",
    "assignment_columns",
    "changelog_entry",
    "latest_change",
    "load_scheme",
    "parse_scheme",
    "record_scheme",
    "segment_profiles",
]
