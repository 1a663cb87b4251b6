"""Segments: the versioned scheme (YAML), rule-based assignment to action segments, profiles and the scheme changelog.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.segments._assign import (
    SchemeDataError,
    assign_segments,
    load_sources,
    segment_profiles,
)
from segmentation_platform.core.segments._changelog import changelog_entry, latest_change, record_scheme
from segmentation_platform.core.segments._checks import assignment_problems, empty_segments, segment_count_ok
from segmentation_platform.core.segments._parse import load_scheme, parse_scheme
from segmentation_platform.core.segments._scheme import (
    LOGIC_VERSION,
    MAX_SEGMENTS,
    MIN_SEGMENTS,
    SCHEME_PATH,
    SOURCE_TABLES,
    SegmentScheme,
)
from segmentation_platform.core.segments._tables import (
    SEGMENT_CHANGELOG_SCHEMA,
    SEGMENT_PROFILES_SCHEMA,
    TABLE_SCHEMAS,
    assignments_schema,
)

__all__ = [
    "LOGIC_VERSION",
    "MAX_SEGMENTS",
    "MIN_SEGMENTS",
    "SCHEME_PATH",
    "SEGMENT_CHANGELOG_SCHEMA",
    "SEGMENT_PROFILES_SCHEMA",
    "SOURCE_TABLES",
    "TABLE_SCHEMAS",
    "SchemeDataError",
    "SegmentScheme",
    "assign_segments",
    "assignment_problems",
    "assignments_schema",
    "changelog_entry",
    "empty_segments",
    "latest_change",
    "load_scheme",
    "load_sources",
    "parse_scheme",
    "record_scheme",
    "segment_count_ok",
    "segment_profiles",
]
