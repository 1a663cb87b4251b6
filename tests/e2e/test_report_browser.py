"""Render the HTML report in headless Chromium and check the charts are really drawn."""

import re

import pytest

from segmentation_platform.core import reporting
from tests.worlds.activation_world import SNAPSHOTS
from tests.worlds.report_world import build_measured_world

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    world = build_measured_world(folder)
    with world.connect(read_only=True) as conn:
        html = reporting.render_report(reporting.load_report_data(conn, SNAPSHOTS[2]))
    path = folder / "reports" / SNAPSHOTS[2].isoformat() / "report.html"
    path.parent.mkdir(parents=True)
    path.write_text(html, encoding="utf-8")
    return path


CHARTS = "document.querySelectorAll('svg[data-chart]').length"


def test_browser_renders_every_chart_with_data(report_file, browser):
    browser.open(report_file.as_uri())
    browser.wait_for(f"{CHARTS} >= 8", "the report's charts")
    dom = browser.evaluate("document.documentElement.outerHTML")
    assert "<title>Segment report" in dom
    charts = dict(re.findall(r"<svg [^>]*data-chart=\"([a-z-]+)\"[^>]*>(.*?)</svg>", dom, re.S))
    expected = {
        "segment-sizes": "rect",
        "segment-value": "rect",
        "cltv-histogram": "rect",
        "rfm-grid": "rect",
        "migration-flows": "path",
        "lift-conversion": "g",
        "lift-revenue": "g",
        "ltv-to-cac": "rect",
    }
    assert set(expected) <= set(charts)
    for name, element in expected.items():
        marks = re.findall(rf"<{element} [^>]*data-value=\"([^\"]+)\"", charts[name])
        assert len(marks) >= 3, name
        assert any(float(v) != 0 for v in marks), name


def test_browser_screenshot_is_drawn(report_file, browser, tmp_path):
    browser.resize(1300, 4200)
    browser.open(report_file.as_uri())
    browser.wait_for(f"{CHARTS} >= 8", "the report's charts")
    data = browser.screenshot(tmp_path / "report.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page compresses to a few kB
