import re

import pytest

from segmentation_platform.core import reporting
from tests.worlds.activation_world import SNAPSHOTS
from tests.worlds.report_world import build_measured_world

CHARTS = (
    "segment-sizes",
    "segment-value",
    "cltv-histogram",
    "rfm-grid",
    "migration-flows",
    "lift-conversion",
    "lift-revenue",
    "ltv-to-cac",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_measured_world(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def html(world):
    with world.connect(read_only=True) as conn:
        return reporting.render_report(reporting.load_report_data(conn, SNAPSHOTS[2]))


def test_every_chart_is_inline_svg_with_data(html):
    for chart in CHARTS:
        match = re.search(rf"<svg [^>]*data-chart='{chart}'.*?</svg>", html, re.S)
        assert match, chart
        assert "data-empty" not in match.group(0), chart
        values = re.findall(r"data-value='([^']+)'", match.group(0))
        assert values and any(float(v) != 0 for v in values), chart


def test_report_is_self_contained_and_free_of_pii(world, html):
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r"(src|href)=", html) and "url(" not in html
    assert re.findall(r"https?://[^'\"\s]+", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg ")
    lowered = html.lower()
    for row in world.customers.itertuples():
        for value in (row.email, row.phone, row.first_name, row.last_name):
            if value:
                assert value.strip().lower() not in lowered


def test_rfm_grid_and_migration_add_up(world, html):
    with world.connect(read_only=True) as conn:
        customers = conn.execute(
            "SELECT count(*) FROM models.rfm_scores WHERE snapshot_date = ?", [SNAPSHOTS[2]]
        ).fetchone()[0]
        moved = conn.execute(
            "SELECT sum(customers) FROM measurement.migration WHERE snapshot_date = ?", [SNAPSHOTS[2]]
        ).fetchone()[0]
    grid = re.search(r"data-chart='rfm-grid'.*?</svg>", html, re.S).group(0)
    assert sum(float(v) for v in re.findall(r"class='cell'[^>]*data-value='([^']+)'", grid)) == customers
    flows = re.search(r"data-chart='migration-flows'.*?</svg>", html, re.S).group(0)
    assert sum(int(v) for v in re.findall(r"class='flow'[^>]*data-value='([^']+)'", flows)) == moved


def test_markdown_summary(world):
    with world.connect(read_only=True) as conn:
        summary = reporting.markdown_summary(reporting.load_report_data(conn, SNAPSHOTS[0]))
    lines = summary.splitlines()
    assert lines[0].startswith("| segment | customers |") and len(lines) == 2 + 4
    assert all(" pp (" in line for line in lines[2:])


def test_empty_snapshot_renders_placeholders(world):
    with world.connect(read_only=True) as conn:
        data = reporting.load_report_data(conn, SNAPSHOTS[0].replace(year=2030))
    html = reporting.render_report(data)
    assert html.count("data-empty='true'") >= 2 and "No segment KPIs" in html
    assert reporting.markdown_summary(data).startswith("No segment KPIs")


def test_chart_helpers_escape_labels():
    svg = reporting.bar_chart("x", "x", [("<script>", 1.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
