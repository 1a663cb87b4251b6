import json
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from segmentation_platform.core.config import ConfigError
from segmentation_platform.core.segments import (
    SCHEME_PATH,
    SchemeDataError,
    assign_segments,
    changelog_entry,
    load_scheme,
    parse_scheme,
    record_scheme,
    segment_profiles,
)
from segmentation_platform.core.warehouse import tables

TEXT = SCHEME_PATH.read_text()
NOW = datetime(2025, 3, 5, 12)


def line_of(text: str, fragment: str) -> int:
    """1-based line of the only line containing `fragment`."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def broken(old: str, new: str, tmp_path) -> tuple[str, ConfigError]:
    assert old in TEXT, old
    text = TEXT.replace(old, new, 1)
    path = tmp_path / "scheme.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_scheme(path)
    assert str(error.value).startswith(f"{path}:")
    return text, error.value


def test_the_shipped_scheme_loads():
    scheme = load_scheme()
    assert 3 <= len(scheme.segments) <= 7
    assert scheme.rules[-1].is_catch_all and not any(r.is_catch_all for r in scheme.rules[:-1])
    assert scheme.version == f"{scheme.declared_version}+{scheme.content_hash[:8]}"
    assert [a.name for a in scheme.axes] == [
        "value_tier",
        "lifecycle_stage",
        "risk_tier",
        "rfm_segment",
        "behaviour_cluster",
    ]
    for segment in scheme.segments:
        assert segment.playbook.owner and segment.playbook.approved_usage
        assert segment.playbook.contact_frequency_cap.per_days > 0


@pytest.mark.parametrize(
    ("old", "new", "marker", "reason"),
    [
        (
            "author: CRM strategy team",
            "author: CRM strategy team\nauthr: typo",
            "authr: typo",
            "unknown field 'authr'",
        ),
        (
            "      risk_tier: [high, medium]\n",
            "      risk_tier: [high, medium]\n      churn_tier: [high]\n",
            "churn_tier: [high]",
            "unknown axis 'churn_tier'",
        ),
        (
            "      lifecycle_stage: [prospect, new]",
            "      lifecycle_stage: [prospect, newbie]",
            "lifecycle_stage: [prospect, newbie]",
            "no value 'newbie'",
        ),
        (
            "    segment: let_go\n    when:\n      value_tier",
            "    segment: let_goo\n    when:\n      value_tier",
            "segment: let_goo",
            "unknown segment 'let_goo'",
        ),
        ("    method: percentile", "    method: quantile", "method: quantile", "must be one of"),
        (
            "      offer: none\n",
            "      offer: none\n      budget: 10\n",
            "budget: 10",
            "unknown field 'segments.let_go.playbook.budget'",
        ),
        (
            "        min_percentile: 40",
            "        min_percentile: 90",
            "min_percentile: 90",
            "highest min_percentile first",
        ),
        (
            "  - name: everyone_else\n    segment: grow_potential\n    when: {}\n",
            "",
            "name: low_value_likely_gone",
            "must catch everyone",
        ),
        ("    source: clv", "    source: crm", "source: crm", "must be one of"),
    ],
)
def test_scheme_errors_name_file_line_and_reason(tmp_path, old, new, marker, reason):
    text, error = broken(old, new, tmp_path)
    assert reason in error.reason
    assert error.line == line_of(text, marker)


def test_invalid_yaml_and_duplicate_keys_fail_with_their_line(tmp_path):
    text, error = broken("    column: cltv", "    column: [cltv", tmp_path)
    assert "invalid YAML" in error.reason and error.line >= line_of(text, "column: [cltv")
    text, error = broken("    column: cltv", "    column: cltv\n    column: p_alive", tmp_path)
    assert "duplicate key 'column'" in error.reason and error.line == line_of(text, "column: p_alive")


def test_a_rule_after_the_catch_all_is_rejected(tmp_path):
    extra = "  - name: never\n    segment: let_go\n    when:\n      risk_tier: [high]\n"
    text, error = broken("\n# Profile metrics", f"{extra}\n# Profile metrics", tmp_path)
    assert "can never fire" in error.reason and error.line == line_of(text, "name: never")


def test_segment_count_must_be_3_to_7(tmp_path):
    start = TEXT.index("segments:\n  onboard_new:")
    playbook = TEXT[TEXT.index("  let_go:\n") : TEXT.index("\n# Rules in order")]
    extra = "".join(playbook.replace("let_go", f"spare_{i}", 1) + "\n" for i in range(2))
    text, error = broken(playbook, playbook + "\n" + extra.rstrip("\n"), tmp_path)
    assert "3 to 7 action segments, found 8" in error.reason
    assert error.line == line_of(text[start:], "onboard_new:") + text[:start].count("\n")


def test_an_unused_segment_is_rejected(tmp_path):
    _, error = broken("    segment: onboard_new\n", "    segment: grow_potential\n", tmp_path)
    assert "segment 'onboard_new' is assigned by no rule" in error.reason


# ------------------------------------------------------------------------------ assignment


def sources(n: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    keys = [f"K{i:04d}" for i in range(n)]
    stages = rng.choice(["prospect", "new", "active", "at_risk", "dormant", "lost"], n)
    features = pd.DataFrame(
        {
            "customer_key": keys,
            "lifecycle_stage": stages,
            "monetary_total": rng.gamma(2, 100, n),
            "contribution_margin": rng.gamma(2, 40, n),
            "frequency": rng.integers(0, 10, n),
            "email_open_rate_90d": rng.random(n),
        }
    )
    buyers = features[features["lifecycle_stage"] != "prospect"]
    clv = pd.DataFrame({"customer_key": buyers["customer_key"], "cltv": rng.gamma(2, 200, len(buyers))})
    churn = pd.DataFrame(
        {"customer_key": buyers["customer_key"], "churn_probability": rng.random(len(buyers))}
    ).assign(
        risk_tier=lambda f: np.where(
            f.churn_probability >= 0.6, "high", np.where(f.churn_probability >= 0.3, "medium", "low")
        )
    )
    rfm = pd.DataFrame(
        {
            "customer_key": buyers["customer_key"],
            "rfm_segment": rng.choice(["Champions", "Can't Lose Them", "Lost"], len(buyers)),
        }
    )
    clusters = pd.DataFrame(
        {
            "customer_key": buyers["customer_key"],
            "cluster_id": pd.array(rng.integers(0, 4, len(buyers)), dtype="Int32"),
        }
    )
    return {"features": features, "clv": clv, "churn": churn, "rfm": rfm, "clusters": clusters}


def expected_segment(row) -> str:
    """The shipped rules, written out by hand."""
    if row.lifecycle_stage in ("prospect", "new"):
        return "onboard_new"
    if (
        row.value_tier == "top"
        and row.risk_tier in ("high", "medium")
        and row.lifecycle_stage in ("active", "at_risk", "dormant")
    ):
        return "save_high_value_at_risk"
    if row.rfm_segment == "Can't Lose Them" and row.lifecycle_stage in ("active", "at_risk", "dormant"):
        return "save_high_value_at_risk"
    if row.value_tier == "top" and row.lifecycle_stage in ("active", "at_risk"):
        return "protect_high_value"
    if row.lifecycle_stage in ("dormant", "lost"):
        return "win_back_lapsed" if row.value_tier in ("top", "mid") else "let_go"
    if row.value_tier in ("low", "unknown") and row.risk_tier == "high":
        return "let_go"
    return "grow_potential"


def test_every_customer_gets_exactly_one_segment_by_the_first_matching_rule():
    scheme = load_scheme()
    data = sources()
    result = assign_segments(scheme, data, "2025-03-03")
    frame = result.assignments
    assert len(frame) == len(data["features"]) and frame["customer_key"].is_unique
    assert frame["action_segment"].notna().all() and set(frame["action_segment"]) <= set(scheme.segment_names)
    assert (frame.apply(expected_segment, axis=1) == frame["action_segment"]).all()
    assert set(frame["scheme_version"]) == {scheme.version}
    prospects = frame[frame["lifecycle_stage"] == "prospect"]
    assert set(prospects["value_tier"]) == {"unknown"} and set(prospects["risk_tier"]) == {"unscored"}
    assert set(prospects["behaviour_cluster"]) == {"unclustered"}
    assert set(frame.loc[frame["behaviour_cluster"] != "unclustered", "behaviour_cluster"]) == {
        "0",
        "1",
        "2",
        "3",
    }
    # Value tiers are percentiles of CLTV among those who have one: top = best 20%.
    valued = frame[frame["value_tier"] != "unknown"]
    assert (valued["value_tier"] == "top").mean() == pytest.approx(0.2, abs=0.01)
    assert (valued["value_tier"] == "low").mean() == pytest.approx(0.4, abs=0.01)
    assert frame.groupby("rule")["action_segment"].nunique().max() == 1


def test_a_missing_source_table_leaves_its_axis_at_the_missing_label():
    data = sources() | {"churn": None, "clusters": None}
    result = assign_segments(load_scheme(), data, "2025-03-03")
    assert set(result.assignments["risk_tier"]) == {"unscored"}
    assert any("models.churn_scores is not available" in note for note in result.notes)


def test_a_missing_column_names_the_axis_and_its_line():
    scheme = load_scheme()
    data = sources()
    data["clv"] = data["clv"].rename(columns={"cltv": "clv_12m"})
    with pytest.raises(
        SchemeDataError, match=rf"axis value_tier \(line {scheme.axis('value_tier').line}\).*cltv"
    ):
        assign_segments(scheme, data, "2025-03-03")


def test_profiles_have_a_row_per_segment_with_economics_and_playbook():
    scheme = load_scheme()
    data = sources()
    assigned = assign_segments(scheme, data, "2025-03-03").assignments
    profiles = segment_profiles(scheme, assigned, data, "2025-03-03")
    assert list(profiles["action_segment"]) == scheme.segment_names
    assert profiles["customers"].sum() == len(assigned)
    assert profiles["share"].sum() == pytest.approx(1.0)
    assert profiles["revenue"].sum() == pytest.approx(data["features"]["monetary_total"].sum())
    onboard = profiles.set_index("action_segment").loc["onboard_new"]
    assert onboard["owner"] == "team:crm-lifecycle" and "per 14 days" in onboard["contact_frequency_cap"]
    top = json.loads(profiles.set_index("action_segment").loc["protect_high_value", "top_features"])
    assert top and {"feature", "z", "segment_mean", "base_mean"} <= set(top[0])
    # A segment nobody falls into still gets its row, with zero customers.
    assigned = assigned.assign(action_segment=assigned["action_segment"].replace("let_go", "grow_potential"))
    empty = segment_profiles(scheme, assigned, data, "2025-03-03").set_index("action_segment").loc["let_go"]
    assert empty["customers"] == 0 and np.isnan(empty["revenue"])


# ------------------------------------------------------------------------------ changelog


def test_changelog_rows_appear_only_when_the_content_changes(tmp_path):
    scheme = load_scheme()
    first = changelog_entry(scheme, None, NOW)
    assert first["change_summary"] == "initial version" and first["change_number"] == 1
    assert changelog_entry(scheme, first, NOW) is None
    commented = parse_scheme("# a new comment\n" + TEXT.replace("version: 1\n", "version: 1   # same\n"))
    assert commented.content_hash == scheme.content_hash  # comments are not content
    assert changelog_entry(commented, first, NOW) is None

    edited = parse_scheme(
        TEXT.replace("offer: 15% off the next order, valid 30 days", "offer: 20% off, valid 14 days")
    )
    assert edited.version != scheme.version and edited.declared_version == scheme.declared_version
    entry = changelog_entry(edited, first, NOW)
    lines = entry["change_summary"].splitlines()
    assert lines[0].startswith("note: declared version 1 was not bumped")
    assert (
        "changed segments.save_high_value_at_risk.playbook.offer: '15% off the next order, valid 30 days' "
        "-> '20% off, valid 14 days'" in lines
    )
    assert entry["previous_version"] == scheme.version and entry["change_number"] == 2

    bumped = parse_scheme(
        TEXT.replace("version: 1\n", "version: 2\n", 1).replace(
            "      risk_tier: [high, medium]\n", "      risk_tier: [high]\n"
        )
    )
    lines = changelog_entry(bumped, first, NOW)["change_summary"].splitlines()
    assert "changed version: 1 -> 2" in lines
    assert "changed rules[high_value_rising_risk].when.risk_tier: [high, medium] -> [high]" in lines
    assert not any(line.startswith("note:") for line in lines)


def test_rule_additions_and_reordering_are_described():
    scheme = load_scheme()
    rules_start = TEXT.index("  - name: new_and_prospects")
    first_rule = TEXT[rules_start : TEXT.index("  - name: high_value_rising_risk")]
    moved = TEXT.replace(first_rule, "", 1).replace(
        "  - name: everyone_else", first_rule + "  - name: everyone_else", 1
    )
    moved = moved.replace(
        "  - name: everyone_else",
        "  - name: vip_lapsed\n    segment: win_back_lapsed\n    when:\n      value_tier: [top]\n  - name: everyone_else",
        1,
    )
    entry = changelog_entry(parse_scheme(moved), changelog_entry(scheme, None, NOW), NOW)
    summary = entry["change_summary"]
    assert "added rules[vip_lapsed].segment = 'win_back_lapsed'" in summary
    assert "reordered rules: new_and_prospects, high_value_rising_risk" in summary


def test_record_scheme_appends_once_per_version():
    conn = duckdb.connect()
    scheme = load_scheme()
    assert record_scheme(conn, scheme, NOW) is not None
    assert record_scheme(conn, scheme, NOW) is None
    edited = parse_scheme(TEXT.replace("author: CRM strategy team", "author: Jane Doe"))
    assert record_scheme(conn, edited, NOW) is not None
    rows = conn.execute(
        f"SELECT change_number, scheme_version, author FROM {tables.SEGMENT_CHANGELOG} ORDER BY 1"
    ).fetchall()
    assert rows == [(1, scheme.version, "CRM strategy team"), (2, edited.version, "Jane Doe")]


def test_an_empty_source_reads_as_missing_for_everyone():
    data = sources()
    data["churn"] = data["churn"].iloc[0:0]
    frame = assign_segments(load_scheme(), data, "2025-03-03").assignments
    assert set(frame["risk_tier"]) == {"unscored"}
    assert frame["action_segment"].notna().all()
