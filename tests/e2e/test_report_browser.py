"""Render the HTML report in headless Chromium and check the charts are really drawn."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activation_world import SNAPSHOTS  # noqa: E402
from report_world import build_measured_world  # noqa: E402

from segmentation_platform.core import report  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    world = build_measured_world(folder)
    with world.connect(read_only=True) as conn:
        html = report.render_report(report.load_report_data(conn, SNAPSHOTS[2]))
    path = folder / "reports" / SNAPSHOTS[2].isoformat() / "report.html"
    path.parent.mkdir(parents=True)
    path.write_text(html, encoding="utf-8")
    return path


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )


def test_browser_renders_every_chart_with_data(report_file, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", report_file.as_uri()).stdout
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


def test_browser_screenshot_is_drawn(report_file, tmp_path):
    screenshot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1300,4200", f"--screenshot={screenshot}", report_file.as_uri())
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page compresses to a few kB
