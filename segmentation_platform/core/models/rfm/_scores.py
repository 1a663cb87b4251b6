"""RFM quintile scores and named segments, computed in DuckDB.

Scores are relative to one snapshot's purchasers (customers with at least one order),
so a customer's R score can drop while nothing about them changed: that is the point of
quintiles, and why the segment map carries a version on every row.
"""

from dataclasses import dataclass
from itertools import product
from pathlib import Path

import duckdb
import pyarrow as pa

from segmentation_platform.core.config import ConfigSection, read_yaml
from segmentation_platform.core.config._paths import CONFIG_DIR

CONFIG_PATH = CONFIG_DIR / "rfm_segments.yaml"
SCORES = (1, 2, 3, 4, 5)
TIE_METHODS = ("by_customer_key", "shared")
RULE_SCORES = ("r", "f", "m", "fm")

# name -> (SQL type, description): the table's columns, its Dagster column schema.
RFM_COLUMN_DOCS = {
    "snapshot_date": ("DATE", "Snapshot the scores are as of (00:00 on this date)"),
    "customer_key": ("VARCHAR", "Customer key; only customers with at least one purchase are scored"),
    "recency_days": ("INTEGER", "Days from the last purchase date to the snapshot date"),
    "frequency": ("BIGINT", "Orders before the snapshot"),
    "monetary_total": ("DOUBLE", "Revenue before the snapshot"),
    "r_score": ("INTEGER", "Recency quintile, 5 = most recent"),
    "f_score": ("INTEGER", "Frequency quintile, 5 = most orders"),
    "m_score": ("INTEGER", "Monetary quintile, 5 = most revenue"),
    "fm_score": ("INTEGER", "Mean of F and M scores, rounded half up"),
    "rfm_code": ("VARCHAR", "R, F and M scores as one code, e.g. 545"),
    "rfm_segment": ("VARCHAR", "Named segment of the code (config/rfm_segments.yaml)"),
    "segment_map_version": ("INTEGER", "Version of the segment map that named the segment"),
}
RFM_COLUMNS = {name: sql_type for name, (sql_type, _) in RFM_COLUMN_DOCS.items()}


@dataclass(frozen=True)
class SegmentRule:
    name: str
    description: str
    # score -> inclusive (low, high); omitted scores match 1-5.
    ranges: tuple[tuple[str, tuple[int, int]], ...]

    def matches(self, r: int, f: int, m: int) -> bool:
        values = {"r": r, "f": f, "m": m, "fm": fm_score(f, m)}
        return all(low <= values[score] <= high for score, (low, high) in self.ranges)


@dataclass(frozen=True)
class RfmConfig:
    version: int
    ties: str
    segments: tuple[SegmentRule, ...]

    def segment_of(self, code: str) -> str:
        r, f, m = (int(digit) for digit in code)
        return next(rule.name for rule in self.segments if rule.matches(r, f, m))

    def code_map(self) -> dict[str, str]:
        """Every code 111..555 -> its segment name."""
        return {code: self.segment_of(code) for code in all_codes()}


def fm_score(f: int, m: int) -> int:
    """Mean of F and M rounded half up (4 and 5 make 5), the convention of the R x FM grid."""
    return (f + m + 1) // 2


def all_codes() -> list[str]:
    return [f"{r}{f}{m}" for r, f, m in product(SCORES, SCORES, SCORES)]


def load_rfm_config(path: Path | str = CONFIG_PATH) -> RfmConfig:
    """Parse `rfm_segments.yaml`; reject it unless every code 111..555 has exactly one segment."""
    root = read_yaml(path)
    root.only("version", "scoring", "segments")
    scoring = root.section("scoring")
    scoring.only("ties")
    rules = []
    for index, item in enumerate(root.items("segments")):
        where = f"segments[{index}]"
        if not isinstance(item, dict):
            raise root.error(where, f"expected a mapping with name and score ranges, got {item!r}")
        section = ConfigSection(root.path, where, item)
        section.only("name", "description", *RULE_SCORES)
        ranges = tuple((score, _score_range(section, score)) for score in RULE_SCORES if score in item)
        rules.append(SegmentRule(section.string("name"), section.string("description", ""), ranges))
    names = [rule.name for rule in rules]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise root.error(f"segments[{index}].name", f"segment {name!r} is defined twice")
    _check_partition(root, rules)
    return RfmConfig(
        version=root.integer("version", minimum=1),
        ties=scoring.string("ties", choices=TIE_METHODS),
        segments=tuple(rules),
    )


def _score_range(section: ConfigSection, score: str) -> tuple[int, int]:
    value = section.raw(score)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
    ):
        raise section.error(score, f"expected [low, high] whole scores, got {value!r}")
    low, high = value
    if not 1 <= low <= high <= 5:
        raise section.error(score, f"expected 1 <= low <= high <= 5, got [{low}, {high}]")
    return low, high


def _check_partition(root: ConfigSection, rules: list[SegmentRule]) -> None:
    uncovered, doubled, used = [], [], set()
    for code in all_codes():
        r, f, m = (int(digit) for digit in code)
        hits = [rule.name for rule in rules if rule.matches(r, f, m)]
        used.update(hits)
        if not hits:
            uncovered.append(code)
        elif len(hits) > 1:
            doubled.append(f"{code} ({' and '.join(hits)})")
    if uncovered:
        raise root.error("segments", f"{len(uncovered)} code(s) match no segment: {_first(uncovered)}")
    if doubled:
        raise root.error("segments", f"{len(doubled)} code(s) match several segments: {_first(doubled)}")
    unused = [rule.name for rule in rules if rule.name not in used]
    if unused:
        raise root.error("segments", f"segment(s) matching no code: {', '.join(unused)}")


def _first(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f", ... ({len(items) - shown} more)" if len(items) > shown else "")


def _score_sql(value: str, descending: bool, ties: str) -> str:
    direction = "DESC" if descending else "ASC"
    if ties == "shared":
        return (
            f"CAST(1 + floor(5 * (rank() OVER (PARTITION BY snapshot_date ORDER BY {value} {direction}) - 1)"
            " / count(*) OVER (PARTITION BY snapshot_date)) AS INTEGER)"
        )
    return f"ntile(5) OVER (PARTITION BY snapshot_date ORDER BY {value} {direction}, customer_key)"


def score_rfm(features, config: RfmConfig | None = None, conn: duckdb.DuckDBPyConnection | None = None):
    """RFM scores and segment of every purchaser in `features`, per snapshot_date.

    `features` is any frame DuckDB scans (Arrow, polars, pandas) with snapshot_date,
    customer_key, recency_days, frequency and monetary_total; several snapshots are scored
    independently. Customers without a purchase get no row. Returns an Arrow table.
    """
    config = config or load_rfm_config()
    own = conn is None
    conn = duckdb.connect() if own else conn
    segment_map = pa.table(
        {"rfm_code": list(config.code_map()), "rfm_segment": list(config.code_map().values())}
    )
    conn.register("_rfm_input", features)
    conn.register("_rfm_segment_map", segment_map)
    try:
        return conn.sql(
            f"""
            WITH scored AS (
                SELECT snapshot_date, customer_key, recency_days, frequency, monetary_total,
                    {_score_sql("recency_days", True, config.ties)} AS r_score,
                    {_score_sql("frequency", False, config.ties)} AS f_score,
                    {_score_sql("monetary_total", False, config.ties)} AS m_score
                FROM _rfm_input
                WHERE frequency > 0
            )
            SELECT CAST(snapshot_date AS DATE) AS snapshot_date, customer_key,
                CAST(recency_days AS INTEGER) AS recency_days, CAST(frequency AS BIGINT) AS frequency,
                CAST(monetary_total AS DOUBLE) AS monetary_total,
                CAST(r_score AS INTEGER) AS r_score, CAST(f_score AS INTEGER) AS f_score,
                CAST(m_score AS INTEGER) AS m_score,
                CAST((f_score + m_score + 1) // 2 AS INTEGER) AS fm_score,
                CAST(r_score AS VARCHAR) || f_score || m_score AS rfm_code,
                s.rfm_segment,
                CAST({config.version} AS INTEGER) AS segment_map_version
            FROM scored LEFT JOIN _rfm_segment_map s
                ON s.rfm_code = CAST(r_score AS VARCHAR) || f_score || m_score
            ORDER BY snapshot_date, customer_key
            """
        ).to_arrow_table()
    finally:
        conn.unregister("_rfm_input")
        conn.unregister("_rfm_segment_map")
        if own:
            conn.close()
