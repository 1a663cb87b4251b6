import random
import re
from collections import Counter
from datetime import date

import pyarrow as pa
import pytest

from segmentation_platform.core.config import ConfigError
from segmentation_platform.core.models.rfm import (
    CONFIG_PATH,
    RFM_SCORES_SCHEMA,
    RfmConfig,
    all_codes,
    fm_score,
    load_rfm_config,
    score_rfm,
)

SNAPSHOT = date(2025, 3, 3)
STANDARD_SEGMENTS = {
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
}


def frame(rows: list[tuple], snapshot: date = SNAPSHOT) -> pa.Table:
    """rows: (customer_key, recency_days, frequency, monetary_total)."""
    keys, recency, frequency, monetary = zip(*rows, strict=True) if rows else ([], [], [], [])
    return pa.table(
        {
            "snapshot_date": [snapshot] * len(rows),
            "customer_key": list(keys),
            "recency_days": pa.array(recency, pa.int32()),
            "frequency": pa.array(frequency, pa.int64()),
            "monetary_total": pa.array(monetary, pa.float64()),
        }
    )


def by_key(table: pa.Table) -> dict[str, dict]:
    return {row["customer_key"]: row for row in table.to_pylist()}


def test_every_code_maps_to_exactly_one_standard_segment():
    config = load_rfm_config()
    codes = all_codes()
    assert len(codes) == 125 and codes[0] == "111" and codes[-1] == "555"
    for code in codes:
        r, f, m = (int(digit) for digit in code)
        assert sum(rule.matches(r, f, m) for rule in config.segments) == 1, code
    assert set(config.code_map().values()) == STANDARD_SEGMENTS


@pytest.mark.parametrize(
    ("code", "segment"),
    [
        ("555", "Champions"),
        ("545", "Champions"),
        ("455", "Loyal"),
        ("533", "Potential Loyalist"),
        ("511", "New"),
        ("515", "New"),
        ("525", "Champions"),
        ("411", "Promising"),
        ("415", "Promising"),
        ("333", "Need Attention"),
        ("321", "About to Sleep"),
        ("244", "At Risk"),
        ("155", "Can't Lose Them"),
        ("212", "Hibernating"),
        ("111", "Lost"),
    ],
)
def test_standard_grid(code, segment):
    assert load_rfm_config().segment_of(code) == segment


def test_fm_rounds_half_up():
    assert [fm_score(1, 1), fm_score(1, 2), fm_score(4, 5), fm_score(2, 4)] == [1, 2, 5, 3]


def test_quintiles_with_recency_inverted():
    rows = [(f"C{i:02d}", 100 - 10 * i, i + 1, 10.0 * i) for i in range(10)]
    scores = by_key(score_rfm(frame(rows)))
    assert [scores[f"C{i:02d}"]["r_score"] for i in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [scores[f"C{i:02d}"]["f_score"] for i in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores["C09"]["rfm_code"] == "555" and scores["C09"]["rfm_segment"] == "Champions"
    assert scores["C00"]["rfm_code"] == "111" and scores["C00"]["rfm_segment"] == "Lost"
    assert scores["C00"]["segment_map_version"] == 1


def test_ties_are_broken_by_customer_key_whatever_the_input_order():
    rows = [(f"C{i:02d}", 7, 1, 20.0) for i in range(10)]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    config = load_rfm_config()
    by_key_config = RfmConfig(version=config.version, ties="by_customer_key", segments=config.segments)
    first, second = score_rfm(frame(rows), by_key_config), score_rfm(frame(shuffled), by_key_config)
    assert first.equals(second)
    assert [r["f_score"] for r in first.to_pylist()] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_shared_ties_give_equal_values_equal_scores():
    shared = load_rfm_config()
    assert shared.ties == "shared"
    rows = [(f"C{i:02d}", 10, 1 if i < 6 else i, 5.0 * i) for i in range(10)]
    scores = by_key(score_rfm(frame(rows), shared))
    assert {scores[f"C{i:02d}"]["f_score"] for i in range(6)} == {1}
    assert [scores[f"C{i:02d}"]["f_score"] for i in range(6, 10)] == [4, 4, 5, 5]
    assert {row["r_score"] for row in scores.values()} == {1}


def test_only_purchasers_are_scored_and_snapshots_apart():
    early = frame([("A", 3, 2, 50.0), ("B", 9, 1, 10.0), ("P", None, 0, 0.0)], date(2025, 3, 3))
    late = frame([("A", 10, 2, 50.0), ("B", 2, 3, 90.0)], date(2025, 3, 10))
    scores = score_rfm(pa.concat_tables([early, late]))
    assert scores.column_names == RFM_SCORES_SCHEMA.names
    per_snapshot = Counter(scores.column("snapshot_date").to_pylist())
    assert per_snapshot == {date(2025, 3, 3): 2, date(2025, 3, 10): 2}
    rows = {(r["snapshot_date"], r["customer_key"]): r["r_score"] for r in scores.to_pylist()}
    assert rows[(date(2025, 3, 3), "A")] > rows[(date(2025, 3, 3), "B")]
    assert rows[(date(2025, 3, 10), "B")] > rows[(date(2025, 3, 10), "A")]


def test_scores_land_in_a_table_of_the_declared_types():
    import duckdb

    from segmentation_platform.core import warehouse

    rows = [(f"C{i}", i + 1, i + 1, float(i)) for i in range(7)]
    with duckdb.connect() as conn:
        scores = score_rfm(frame(rows), conn=conn)
        warehouse.replace_partitions(
            conn, "models.rfm_scores", scores, "snapshot_date", [SNAPSHOT], RFM_SCORES_SCHEMA.sql_columns
        )
        described = dict(
            conn.execute("SELECT column_name, column_type FROM (DESCRIBE models.rfm_scores)").fetchall()
        )
        conn.register("_scores", scores)
        produced = dict(conn.execute("SELECT column_name, column_type FROM (DESCRIBE _scores)").fetchall())
    assert described == produced == RFM_SCORES_SCHEMA.sql_columns


def _edited(tmp_path, old: str, new: str):
    text = CONFIG_PATH.read_text()
    assert old in text
    path = tmp_path / "rfm_segments.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ("    r: [5, 5]\n    f: [1, 1]", "    r: [5, 5]\n    f: [1, 2]", "segments",
         "match several segments: 521 (Potential Loyalist and New)"),
        ("  - name: Lost\n    r: [1, 1]\n    fm: [1, 2]", "  - name: Lost\n    r: [1, 1]\n    fm: [1, 1]",
         "segments", "match no segment: 112, 113, 121"),
        ("    r: [5, 5]\n    fm: [4, 5]", "    r: [5, 6]\n    fm: [4, 5]", "segments[0].r",
         "must have 1 <= low <= high <= 5, got [5, 6]"),
        ("    r: [5, 5]\n    fm: [4, 5]", "    r: 5\n    fm: [4, 5]", "segments[0].r", "must be [low, high] whole scores"),
        ("    fm: [4, 5]\n", "    fn: [4, 5]\n", "segments[0].fn", "unknown field"),
        ("name: Loyal\n", "name: Champions\n", "segments[1].name", "defined twice"),
        ("ties: shared", "ties: random", "scoring.ties", "must be one of ['by_customer_key', 'shared']"),
    ],
)  # fmt: skip
def test_bad_segment_map_names_file_key_and_reason(tmp_path, old, new, key, reason):
    path = _edited(tmp_path, old, new)
    with pytest.raises(ConfigError) as error:
        load_rfm_config(path)
    message = str(error.value)
    assert re.match(rf"{re.escape(str(path))}:\d+: ", message), message
    assert key in message and reason in message, message
