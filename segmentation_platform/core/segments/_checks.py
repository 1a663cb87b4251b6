"""What the assignment checks decide: one row and one defined segment per customer, no empty
segment, 3 to 7 segments. Plain inputs and outputs; defs wraps them in check results."""

from datetime import date

from segmentation_platform.core import warehouse
from segmentation_platform.core.segments._scheme import MAX_SEGMENTS, MIN_SEGMENTS, SegmentScheme
from segmentation_platform.core.warehouse import tables


def assignment_problems(conn, scheme: SegmentScheme, snapshot: date, customers: int) -> dict | None:
    """None when the stored snapshot of `segments.assignments` has exactly one row per customer
    of the features snapshot (`customers` of them), each in a segment the scheme defines;
    otherwise the counts that differ."""
    stored = conn.execute(
        f"SELECT count(*), count(DISTINCT customer_key), count(*) FILTER (WHERE action_segment IS NULL "
        f"OR action_segment NOT IN (SELECT unnest(?))) FROM {warehouse.table_ref(tables.SEGMENT_ASSIGNMENTS)} "
        "WHERE snapshot_date = ?",
        [scheme.segment_names, snapshot],
    ).fetchall()[0]
    if stored == (customers, customers, 0):
        return None
    return {
        "customers": customers,
        "rows": stored[0],
        "distinct_customers": stored[1],
        "rows_without_a_defined_segment": stored[2],
    }


def empty_segments(scheme: SegmentScheme, counts: dict[date, dict[str, int]]) -> dict[str, list[str]]:
    """Snapshot (ISO) -> the defined segments nobody fell into; snapshots without any left out.
    `counts` maps snapshot -> segment -> customers."""
    empty = {d.isoformat(): [n for n in scheme.segment_names if not counts[d].get(n)] for d in counts}
    return {d: names for d, names in empty.items() if names}


def segment_count_ok(
    scheme: SegmentScheme, counts: dict[date, dict[str, int]]
) -> tuple[bool, dict[str, int]]:
    """Whether the scheme defines 3 to 7 segments and no snapshot uses more than 7; with the
    segments in use per snapshot (ISO)."""
    used = {d.isoformat(): len(c) for d, c in counts.items()}
    defined = len(scheme.segments)
    passed = MIN_SEGMENTS <= defined <= MAX_SEGMENTS and all(n <= MAX_SEGMENTS for n in used.values())
    return passed, used
